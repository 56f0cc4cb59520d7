package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.model.LlamaModel;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link Backend#residualFormat}: where a backend adds the projections into the residual ({@link
 * Backend#addsIntoResidual}) and offers a 16-bit residual, {@link LlamaModel} holds the residual stream in that format:
 * the embedding writes it, linearAdd and mlpAdd add into it and the norms read it; with an o or down bias it stays
 * float32. The CPU backend has neither 16-bit tensors nor the adds, so the backend here adds the products on the host
 * and stands a float32 tensor in for the 16-bit one, which leaves every number as it was.
 */
class ResidualFormatTest {
    @ParameterizedTest(name = "attention bias {0}, mlp bias {1}")
    @CsvSource({"false, false, true", "true, false, false", "false, true, false"})
    void llamaHoldsTheResidualInTheResidualFormatOnlyWithoutBiases(boolean attentionBias, boolean mlpBias, boolean sixteenBit) {
        ModelConfig config = Fixtures.tinyLlama(attentionBias, mlpBias, false);
        int[] prompt = new Random(6).ints(23, 0, 97).toArray();
        int[] calls = new int[4];  // embedding into a 16-bit tensor, norms of one, linearAdd and mlpAdd into one
        float[] plain, offered;
        int allocations;
        try (CpuBackend cpu = new CpuBackend(2)) {
            plain = Fixtures.promptLogits(cpu, config, prompt);
            var offering = new SixteenBitStandIn(cpu) {
                @Override public boolean addsIntoResidual(Weight w, int rows) { return true; }
                @Override public DType residualFormat(Weight w, int rows) { return DType.BF16; }
                @Override public void embedding(Weight table, Tensor ids, Tensor out) {
                    if (sixteen.contains(out)) calls[0]++;
                    super.embedding(table, ids, out);
                }
                @Override public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) {
                    if (sixteen.contains(x)) calls[1]++;
                    super.rmsNorm(x, weight, eps, out);
                }
                @Override public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
                    if (sixteen.contains(acc)) {
                        calls[2]++;
                        assertThat(bias).as("no bias into the residual format").isNull();
                    }
                    try (Tensor product = super.allocate(DType.F32, acc.rows(), acc.cols())) {
                        super.linear(x, w, bias, product);
                        addInto(acc, product);
                    }
                }
                @Override public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
                    if (sixteen.contains(acc)) {
                        calls[3]++;
                        assertThat(downBias).as("no bias into the residual format").isNull();
                    }
                    try (Tensor product = super.allocate(DType.F32, acc.rows(), acc.cols())) {
                        super.mlp(h, gateUp, gateUpBias, down, downBias, product);
                        addInto(acc, product);
                    }
                }
                /** acc += x in float32, as addRmsNorm adds the product into the residual. */
                private void addInto(Tensor acc, Tensor x) {
                    float[] a = download(acc), b = download(x);
                    for (int i = 0; i < a.length; i++) a[i] += b[i];
                    write(acc, a);
                }
            };
            offered = Fixtures.promptLogits(offering, config, prompt);
            allocations = offering.allocations;
        }
        int layers = config.numLayers();
        // a residual: one allocation, one embedding, the input norm and two norms a layer, two adds a layer
        int[] expected = sixteenBit ? new int[] {1, 1, 1 + 2 * layers, layers, layers} : new int[5];
        assertThat(new int[] {allocations, calls[0], calls[1], calls[2], calls[3]})
                .as("16-bit allocations, embedding into them, norms of them, linearAdd and mlpAdd into them").containsExactly(expected);
        assertThat(Arrays.mismatch(offered, plain)).as("first logit that differs").isEqualTo(-1);
    }
}
