package dev.lathe.cli;

import dev.lathe.core.checkpoint.Checkpoint;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.model.ModelRegistry;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

/** Prints a model's architecture, size, dtypes, context and the memory it needs; loads no weights. */
@Command(name = "inspect", description = "Describe a model: architecture, parameters, dtypes, context, memory needed.")
final class InspectCommand implements Callable<Integer> {
    @Parameters(index = "0", arity = "0..1", paramLabel = "MODEL",
            description = "HF checkpoint directory or synthetic:<preset> (default: the model in models/)")
    String model;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        ModelRef ref = ModelRef.parse(model);
        ModelConfig c;
        Map<DType, Long> dtypeParams = new TreeMap<>();
        if (ref instanceof ModelRef.Directory d) {
            try (Checkpoint ckpt = Checkpoint.open(d.path())) {
                c = ckpt.config();
                for (String name : ckpt.names()) {
                    WeightTensor t = ckpt.get(name);
                    dtypeParams.merge(t.dtype(), t.numElements(), Long::sum);
                }
            }
        } else {
            c = dev.lathe.core.generate.LoadedModel.config(ref);
            dtypeParams.put(DType.BF16, c.parameterCount());
        }
        ModelRegistry.family(c.architecture());
        long params = c.parameterCount();
        long weightBytes = 0;
        for (var e : dtypeParams.entrySet()) weightBytes += e.getValue() * e.getKey().byteSize();
        long kvPerToken = 2L * c.numLayers() * c.kvSize() * 2; // K and V, BF16
        out.printf(Locale.ROOT, "model:          %s%n", ref.displayName());
        out.printf(Locale.ROOT, "architecture:   %s%n", c.architecture());
        out.printf(Locale.ROOT, "parameters:     %s (%,d)%n", billions(params), params);
        out.printf(Locale.ROOT, "layers:         %d%n", c.numLayers());
        out.printf(Locale.ROOT, "hidden:         %d (intermediate %d)%n", c.hiddenSize(), c.intermediateSize());
        out.printf(Locale.ROOT, "attention:      %d heads, %d KV heads, head dim %d%s%s%s%n", c.numHeads(), c.numKvHeads(),
                c.headDim(), c.attentionBias() ? ", QKV bias" : "", c.qkNorm() ? ", q/k norm" : "",
                c.slidingWindow() > 0 ? ", sliding window " + c.slidingWindow() : "");
        out.printf(Locale.ROOT, "vocabulary:     %d%s%n", c.vocabSize(), c.tieWordEmbeddings() ? " (tied embeddings)" : "");
        out.printf(Locale.ROOT, "context:        %d tokens%n", c.maxPositionEmbeddings());
        out.printf(Locale.ROOT, "rope:           theta %s%s%n", fmt(c.ropeTheta()), rope(c.ropeScaling()));
        var dt = new StringBuilder();
        for (var e : dtypeParams.entrySet()) {
            if (!dt.isEmpty()) dt.append(", ");
            dt.append(e.getKey()).append(' ').append(billions(e.getValue()));
        }
        out.printf(Locale.ROOT, "weight dtypes:  %s%s%n", dt, ref instanceof ModelRef.Synthetic ? " (synthetic default)" : "");
        out.printf(Locale.ROOT, "memory needed:  weights %s; KV cache (BF16) %s per token, %s for one full %d-token context%n",
                bytes(weightBytes), bytes(kvPerToken), bytes(kvPerToken * c.maxPositionEmbeddings()), c.maxPositionEmbeddings());
        return 0;
    }

    private static String rope(RopeScaling s) {
        if (s == null || s.type() == RopeScaling.Type.NONE) return "";
        return switch (s.type()) {
            case LLAMA3 -> ", llama3 scaling (factor " + fmt(s.factor()) + ", low " + fmt(s.lowFreqFactor()) + ", high "
                    + fmt(s.highFreqFactor()) + ", original context " + s.originalMaxPositionEmbeddings() + ")";
            case LINEAR -> ", linear scaling (factor " + fmt(s.factor()) + ")";
            case DYNAMIC -> ", dynamic NTK scaling (factor " + fmt(s.factor()) + ")";
            case NONE -> "";
        };
    }

    static String billions(long n) {
        if (n >= 1_000_000_000L) return String.format(Locale.ROOT, "%.2f B", n / 1e9);
        if (n >= 1_000_000L) return String.format(Locale.ROOT, "%.2f M", n / 1e6);
        return String.format(Locale.ROOT, "%.1f K", n / 1e3);
    }

    static String bytes(long b) {
        if (b >= 1L << 30) return String.format(Locale.ROOT, "%.2f GiB", b / (double) (1L << 30));
        if (b >= 1L << 20) return String.format(Locale.ROOT, "%.2f MiB", b / (double) (1L << 20));
        return String.format(Locale.ROOT, "%.1f KiB", b / 1024.0);
    }

    private static String fmt(double d) {
        return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
    }
}
