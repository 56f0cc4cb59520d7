package dev.lathe.cli;

import ch.qos.logback.classic.Level;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.server.EngineFactory;
import dev.lathe.server.LatheServer;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * {@code lathe serve [MODEL...]}: the OpenAI API and the KServe v2 protocol over HTTP for one or more
 * models, each addressed by name. SIGTERM or Ctrl-C stops it gracefully.
 */
@Command(name = "serve", description = {
        "Serve models: the OpenAI API (/v1), KServe v2 / Triton (/v2 and gRPC), /metrics and /health.",
        "MODEL is DIR, synthetic:<preset> or NAME=DIR (clients address it by NAME; default: the directory's name)."})
final class ServeCommand implements Callable<Integer> {
    private static final String ACCESS_LOGGER = "dev.lathe.server.access";

    @Mixin ModelOptions modelOptions;

    @Parameters(paramLabel = "MODEL", arity = "0..*", description = "models to serve (default: --model, or the model in models/)")
    List<String> models = new ArrayList<>();

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "address to bind (default: ${DEFAULT-VALUE}; 0.0.0.0 for all)")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "port (default: ${DEFAULT-VALUE})")
    int port;

    @Option(names = "--grpc", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "serve KServe v2 gRPC on the HTTP port too, over HTTP/2 (default: on)")
    boolean grpc;

    @Option(names = "--grpc-port", defaultValue = "-1",
            description = "also serve gRPC on a port of its own; -1 = none (default: ${DEFAULT-VALUE})")
    int grpcPort;

    @Option(names = "--api-key", description = "require 'Authorization: Bearer KEY' (default: $LATHE_API_KEY, else none)")
    String apiKey;

    @Option(names = "--max-body-size", defaultValue = "33554432", description = "largest request body in bytes (default: ${DEFAULT-VALUE})")
    long maxBodyBytes;

    @Option(names = "--grace-period", defaultValue = "30", description = "seconds in-flight requests get to finish on shutdown (default: ${DEFAULT-VALUE})")
    long graceSeconds;

    @Option(names = "--gpu-memory-utilization", defaultValue = "0.9",
            description = "share of the GPU's memory for weights, activations and KV cache (default: ${DEFAULT-VALUE})")
    double gpuMemoryUtilization;

    @Option(names = "--max-waiting", defaultValue = "256", description = "queued requests per model before answering 429 (default: ${DEFAULT-VALUE})")
    int maxWaiting;

    @Option(names = "--max-num-seqs", defaultValue = "0", description = "sequences per step per model (default: 1024)")
    int maxNumSeqs;

    @Option(names = "--max-num-batched-tokens", defaultValue = "0",
            description = "tokens per step per model, prefill chunks and decodes together (default: 8192, or max-model-len if longer)")
    int maxNumBatchedTokens;

    @Mixin
    AdmissionOptions admission;

    @Option(names = "--access-log", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "log one key=value line per request to stderr (default: on)")
    boolean accessLog;

    @Spec CommandSpec spec;

    /** {@code NAME=DIR} or a plain model reference; the name defaults to what {@link LoadedModel#name()} says. */
    record ModelSpec(String name, String ref) {
        static ModelSpec parse(String arg) {
            int eq = arg.indexOf('=');
            if (eq > 0 && !arg.startsWith("synthetic:")) return new ModelSpec(arg.substring(0, eq), arg.substring(eq + 1));
            return new ModelSpec(null, arg);
        }
    }

    @Override
    public Integer call() throws InterruptedException {
        List<ModelSpec> specs = new ArrayList<>();
        if (models.isEmpty()) specs.add(new ModelSpec(null, modelOptions.model));
        for (String m : models) specs.add(ModelSpec.parse(m));
        String key = apiKey != null ? apiKey : System.getenv("LATHE_API_KEY");
        if (accessLog && LoggerFactory.getLogger(ACCESS_LOGGER) instanceof ch.qos.logback.classic.Logger l) {
            l.setLevel(Level.INFO); // the CLI logs warnings only unless LATHE_LOG says otherwise
        }

        Backend backend = modelOptions.openBackend();
        Map<String, LoadedModel> loaded = new LinkedHashMap<>();
        LatheServer server;
        try {
            var builder = LatheServer.builder().host(host).port(port).grpcOnHttpPort(grpc).grpcPort(grpcPort).apiKey(key).maxBodyBytes(maxBodyBytes)
                    .gracePeriodMillis(graceSeconds * 1000);
            for (ModelSpec s : specs) {
                ModelRef ref = ModelRef.parse(s.ref());
                LoadedModel m = LoadedModel.open(ref, backend, modelOptions.syntheticDtype, modelOptions.weightsSeed,
                        LoadProgress.NONE);
                String name = s.name() != null ? s.name() : m.name();
                if (loaded.containsKey(name)) {
                    m.close();
                    throw new IllegalArgumentException("two models are both named '" + name + "'; name them with NAME=DIR");
                }
                loaded.put(name, m);
            }
            // engines after every model's weights: on a GPU each KV cache takes an even share of what is left
            int left = loaded.size();
            for (var e : loaded.entrySet()) {
                LoadedModel m = e.getValue();
                var settings = new EngineFactory.Settings(maxModelLen(m), modelOptions.blockSize, maxWaiting,
                        ModelOptions.cacheDtype(m), gpuMemoryUtilization, 1.0 / left--, maxNumSeqs, maxNumBatchedTokens,
                        admission.guaranteeNoEvict, admission.admissionWatermark);
                builder.model(e.getKey(), EngineFactory.DEFAULT.create(e.getKey(), m, settings));
            }
            server = builder.build().start();
        } catch (RuntimeException e) {
            loaded.values().forEach(LoadedModel::close);
            backend.close();
            throw e;
        }
        spec.commandLine().getErr().println("lathe: serving " + loaded.keySet() + " on http://" + host + ":" + server.port()
                + (grpc ? " (gRPC too)" : "") + (server.grpcPort() >= 0 ? ", gRPC also on " + host + ":" + server.grpcPort() : ""));
        var stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.stop();
            loaded.values().forEach(LoadedModel::close);
            backend.close();
            stopped.countDown();
        }, "lathe-shutdown"));
        stopped.await();
        return 0;
    }

    private int maxModelLen(LoadedModel m) {
        int context = m.config().maxPositionEmbeddings();
        int len = modelOptions.maxModelLen > 0 ? modelOptions.maxModelLen : Math.min(context, 8192);
        if (len > context) {
            throw new IllegalArgumentException("--max-model-len " + len + " exceeds the context of " + m.name() + ", "
                    + context + " tokens");
        }
        return len;
    }
}
