package dev.lathe.cuda;

import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.CudaModule;
import dev.lathe.cuda.driver.Kernel;
import dev.lathe.cuda.driver.KernelParams;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static dev.lathe.cuda.driver.KernelParams.f32;
import static dev.lathe.cuda.driver.KernelParams.i32;
import static dev.lathe.cuda.driver.KernelParams.i64;
import static dev.lathe.cuda.driver.KernelParams.ptr;
import static dev.lathe.cuda.driver.KernelParams.struct;

/**
 * Every kernel of src/main/cuda, loaded into one context. Each {@link KernelParams} mirrors its C
 * struct field for field; keep the two in the same order.
 */
final class Kernels implements AutoCloseable {
    final Kernel forwardTokens;
    final Kernel embedding, gatherRows, splitColumns, rmsNorm, rope, writeKv, ropeWriteKv, attention, siluMul, randomNormal,
            convertFromF32, biasAdd, probe, gemv1, gemv2, gemv4, gemv8, gemv1Glu, gemv2Glu, gemv4Glu, gemv8Glu, argmaxRows, sampleRows, splitFromF32, sumHalves;
    /** Tensor-core prefill attention, one kernel per cache type and head size: BF16/F16 x 64/128. */
    final Kernel flashBf16D64, flashBf16D128, flashF16D64, flashF16D128;
    /** The grouped-query variant of the same (four query heads of one KV head per block). */
    final Kernel flashGqaBf16D64, flashGqaBf16D128, flashGqaF16D64, flashGqaF16D128;
    /** The grouped-query variant over 64-key tiles. */
    final Kernel flashGqaK64Bf16D64, flashGqaK64Bf16D128, flashGqaK64F16D64, flashGqaK64F16D128;
    /** The grouped-query variant with each warp's Q rows in shared memory. */
    final Kernel flashGqaW32Bf16D64, flashGqaW32Bf16D128, flashGqaW32F16D64, flashGqaW32F16D128;
    /** The grouped-query variant with S = Q K^T on wgmma (sm_90a only). */
    final Kernel flashGqaWgBf16D64, flashGqaWgBf16D128, flashGqaWgF16D64, flashGqaWgF16D128;
    /** The same with O += P V on wgmma too. */
    final Kernel flashGqaWgvBf16D64, flashGqaWgvBf16D128, flashGqaWgvF16D64, flashGqaWgvF16D128;
    /** The same over 64-key tiles. */
    final Kernel flashGqaWgvK64Bf16D64, flashGqaWgvK64Bf16D128, flashGqaWgvK64F16D64, flashGqaWgvK64F16D128;
    /** The same at 32 rows a warp (two 64-row tiles a block, Q in shared memory). */
    final Kernel flashGqaWgvW32Bf16D64, flashGqaWgvW32Bf16D128, flashGqaWgvW32F16D64, flashGqaWgvW32F16D128;
    /** The same overlapped: the softmax of a tile while P V of the one before runs, three stages of K and V tiles. */
    final Kernel flashGqaWgoBf16D64, flashGqaWgoBf16D128, flashGqaWgoF16D64, flashGqaWgoF16D128;
    /** The warp-specialised kernel: a loading warpgroup and two computing ones, 64-key tiles in four stages. */
    final Kernel flashGqaWsBf16D64, flashGqaWsBf16D128, flashGqaWsF16D64, flashGqaWsF16D128;
    /** split_attention_K for head_dim = 32 K, K = 1..8 (index K - 1), and the merge of their pieces. */
    final Kernel[] splitAttention = new Kernel[8];
    /** The same on tensor cores for 16-bit caches: BF16/F16 x head size 64/128 (split_attention_mma). */
    final Kernel splitMmaBf16D64, splitMmaBf16D128, splitMmaF16D64, splitMmaF16D128;
    final Kernel attentionCombine;
    private final List<CudaModule> modules = new ArrayList<>();

    Kernels(CudaContext context) {
        Map<String, CudaModule> byName = new HashMap<>();
        try {
            for (String m : KernelImages.MODULES) {
                CudaModule module = context.loadModule(m, KernelImages.load(m));
                modules.add(module);
                byName.put(m, module);
            }
            CudaModule rows = byName.get("rows"), convert = byName.get("convert");
            embedding = rows.kernel("embedding", struct("embedding",
                    ptr("ids"), ptr("table"), ptr("out"), i32("n"), i32("hidden"), i32("vocab"), i32("dtype"), i32("out_dtype")));
            gatherRows = rows.kernel("gather_rows", struct("gather_rows",
                    ptr("x"), ptr("rows"), ptr("out"), i32("m"), i32("cols"), i32("x_rows"), i32("x_dtype")));
            forwardTokens = rows.kernel("forward_tokens", struct("forward_tokens",
                    ptr("tokens"), ptr("pairs"), ptr("ids"), i32("n")));
            splitColumns = rows.kernel("split_columns", struct("split_columns",
                    ptr("src"), ptr("dst"), i64("rows"), i32("src_cols"), i32("col_offset"), i32("dst_cols")));
            rmsNorm = byName.get("norm").kernel("rms_norm", struct("rms_norm",
                    ptr("residual"), ptr("x"), ptr("weight"), ptr("out"), i32("groups"), i32("d"), i32("dtype"), f32("eps"),
                    i32("out_dtype"), i32("x_dtype")));
            rope = byName.get("rope").kernel("rope", struct("rope",
                    ptr("x"), ptr("cos"), ptr("sin"), i64("n"), i32("heads"), i32("half")));
            writeKv = byName.get("kv_cache").kernel("write_kv", struct("write_kv",
                    ptr("k"), ptr("v"), ptr("k_cache"), ptr("v_cache"), ptr("slots"), i64("num_slots"),
                    i32("n"), i32("width"), i32("dtype")));
            ropeWriteKv = byName.get("kv_cache").kernel("rope_write_kv", struct("rope_write_kv",
                    ptr("qkv"), ptr("q"), ptr("k_cache"), ptr("v_cache"), ptr("cos"), ptr("sin"), ptr("slots"),
                    i64("num_slots"), i64("n"), i32("heads"), i32("kv_heads"), i32("half"), i32("dtype"), i32("qkv_dtype"), i32("vec")));
            attention = byName.get("attention").kernel("paged_attention", struct("paged_attention",
                    ptr("q"), ptr("k_cache"), ptr("v_cache"), ptr("out"), ptr("query_starts"), ptr("context_lens"),
                    ptr("block_tables"), i32("num_seqs"), i32("num_heads"), i32("num_kv_heads"), i32("head_dim"),
                    i32("block_size"), i32("max_blocks_per_seq"), i32("sliding_window"), i32("dtype"), i32("out_dtype"),
                    f32("scale")));
            CudaModule flash = byName.get("flash_attention");
            flashBf16D64 = flash.kernel("flash_attention_bf16_d64", flashParams("flash_attention_bf16_d64"));
            flashBf16D128 = flash.kernel("flash_attention_bf16_d128", flashParams("flash_attention_bf16_d128"));
            flashF16D64 = flash.kernel("flash_attention_f16_d64", flashParams("flash_attention_f16_d64"));
            flashF16D128 = flash.kernel("flash_attention_f16_d128", flashParams("flash_attention_f16_d128"));
            flashGqaBf16D64 = flash.kernel("flash_attention_gqa_bf16_d64", flashParams("flash_attention_gqa_bf16_d64"));
            flashGqaBf16D128 = flash.kernel("flash_attention_gqa_bf16_d128", flashParams("flash_attention_gqa_bf16_d128"));
            flashGqaF16D64 = flash.kernel("flash_attention_gqa_f16_d64", flashParams("flash_attention_gqa_f16_d64"));
            flashGqaF16D128 = flash.kernel("flash_attention_gqa_f16_d128", flashParams("flash_attention_gqa_f16_d128"));
            flashGqaK64Bf16D64 = flash.kernel("flash_attention_gqa_k64_bf16_d64", flashParams("flash_attention_gqa_k64_bf16_d64"));
            flashGqaK64Bf16D128 = flash.kernel("flash_attention_gqa_k64_bf16_d128", flashParams("flash_attention_gqa_k64_bf16_d128"));
            flashGqaK64F16D64 = flash.kernel("flash_attention_gqa_k64_f16_d64", flashParams("flash_attention_gqa_k64_f16_d64"));
            flashGqaK64F16D128 = flash.kernel("flash_attention_gqa_k64_f16_d128", flashParams("flash_attention_gqa_k64_f16_d128"));
            flashGqaW32Bf16D64 = flash.kernel("flash_attention_gqa_w32_bf16_d64", flashParams("flash_attention_gqa_w32_bf16_d64"));
            flashGqaW32Bf16D128 = flash.kernel("flash_attention_gqa_w32_bf16_d128", flashParams("flash_attention_gqa_w32_bf16_d128"));
            flashGqaW32F16D64 = flash.kernel("flash_attention_gqa_w32_f16_d64", flashParams("flash_attention_gqa_w32_f16_d64"));
            flashGqaW32F16D128 = flash.kernel("flash_attention_gqa_w32_f16_d128", flashParams("flash_attention_gqa_w32_f16_d128"));
            flashGqaWgBf16D64 = flash.kernel("flash_attention_gqa_wg_bf16_d64", flashParams("flash_attention_gqa_wg_bf16_d64"));
            flashGqaWgBf16D128 = flash.kernel("flash_attention_gqa_wg_bf16_d128", flashParams("flash_attention_gqa_wg_bf16_d128"));
            flashGqaWgF16D64 = flash.kernel("flash_attention_gqa_wg_f16_d64", flashParams("flash_attention_gqa_wg_f16_d64"));
            flashGqaWgF16D128 = flash.kernel("flash_attention_gqa_wg_f16_d128", flashParams("flash_attention_gqa_wg_f16_d128"));
            flashGqaWgvBf16D64 = flash.kernel("flash_attention_gqa_wgv_bf16_d64", flashParams("flash_attention_gqa_wgv_bf16_d64"));
            flashGqaWgvBf16D128 = flash.kernel("flash_attention_gqa_wgv_bf16_d128", flashParams("flash_attention_gqa_wgv_bf16_d128"));
            flashGqaWgvF16D64 = flash.kernel("flash_attention_gqa_wgv_f16_d64", flashParams("flash_attention_gqa_wgv_f16_d64"));
            flashGqaWgvF16D128 = flash.kernel("flash_attention_gqa_wgv_f16_d128", flashParams("flash_attention_gqa_wgv_f16_d128"));
            flashGqaWgvK64Bf16D64 = flash.kernel("flash_attention_gqa_wgv_k64_bf16_d64", flashParams("flash_attention_gqa_wgv_k64_bf16_d64"));
            flashGqaWgvK64Bf16D128 = flash.kernel("flash_attention_gqa_wgv_k64_bf16_d128", flashParams("flash_attention_gqa_wgv_k64_bf16_d128"));
            flashGqaWgvK64F16D64 = flash.kernel("flash_attention_gqa_wgv_k64_f16_d64", flashParams("flash_attention_gqa_wgv_k64_f16_d64"));
            flashGqaWgvK64F16D128 = flash.kernel("flash_attention_gqa_wgv_k64_f16_d128", flashParams("flash_attention_gqa_wgv_k64_f16_d128"));
            flashGqaWgvW32Bf16D64 = flash.kernel("flash_attention_gqa_wgv_w32_bf16_d64", flashParams("flash_attention_gqa_wgv_w32_bf16_d64"));
            flashGqaWgvW32Bf16D128 = flash.kernel("flash_attention_gqa_wgv_w32_bf16_d128", flashParams("flash_attention_gqa_wgv_w32_bf16_d128"));
            flashGqaWgvW32F16D64 = flash.kernel("flash_attention_gqa_wgv_w32_f16_d64", flashParams("flash_attention_gqa_wgv_w32_f16_d64"));
            flashGqaWgvW32F16D128 = flash.kernel("flash_attention_gqa_wgv_w32_f16_d128", flashParams("flash_attention_gqa_wgv_w32_f16_d128"));
            flashGqaWgoBf16D64 = flash.kernel("flash_attention_gqa_wgo_bf16_d64", flashParams("flash_attention_gqa_wgo_bf16_d64"));
            flashGqaWgoBf16D128 = flash.kernel("flash_attention_gqa_wgo_bf16_d128", flashParams("flash_attention_gqa_wgo_bf16_d128"));
            flashGqaWgoF16D64 = flash.kernel("flash_attention_gqa_wgo_f16_d64", flashParams("flash_attention_gqa_wgo_f16_d64"));
            flashGqaWgoF16D128 = flash.kernel("flash_attention_gqa_wgo_f16_d128", flashParams("flash_attention_gqa_wgo_f16_d128"));
            flashGqaWsBf16D64 = flash.kernel("flash_attention_gqa_ws_bf16_d64", flashParams("flash_attention_gqa_ws_bf16_d64"));
            flashGqaWsBf16D128 = flash.kernel("flash_attention_gqa_ws_bf16_d128", flashParams("flash_attention_gqa_ws_bf16_d128"));
            flashGqaWsF16D64 = flash.kernel("flash_attention_gqa_ws_f16_d64", flashParams("flash_attention_gqa_ws_f16_d64"));
            flashGqaWsF16D128 = flash.kernel("flash_attention_gqa_ws_f16_d128", flashParams("flash_attention_gqa_ws_f16_d128"));
            // their dynamic shared memory: stages of a K and a V tile of 16-bit values (two unless said), and Q rows (see gqaShared)
            for (Kernel k : List.of(flashGqaBf16D64, flashGqaF16D64)) gqaShared(k, 32, 64, 0, false);
            for (Kernel k : List.of(flashGqaBf16D128, flashGqaF16D128)) gqaShared(k, 32, 128, 0, false);
            for (Kernel k : List.of(flashGqaK64Bf16D64, flashGqaK64F16D64)) gqaShared(k, 64, 64, 0, false);
            for (Kernel k : List.of(flashGqaK64Bf16D128, flashGqaK64F16D128)) gqaShared(k, 64, 128, 0, false);
            for (Kernel k : List.of(flashGqaW32Bf16D64, flashGqaW32F16D64)) gqaShared(k, 32, 64, 32, false);
            for (Kernel k : List.of(flashGqaW32Bf16D128, flashGqaW32F16D128)) gqaShared(k, 32, 128, 32, false);
            // the wgmma kernels align their tiles to 1 KB themselves: 1 KB more
            for (Kernel k : List.of(flashGqaWgBf16D64, flashGqaWgF16D64, flashGqaWgvBf16D64, flashGqaWgvF16D64)) gqaShared(k, 32, 64, 0, true);
            for (Kernel k : List.of(flashGqaWgBf16D128, flashGqaWgF16D128, flashGqaWgvBf16D128, flashGqaWgvF16D128)) {
                gqaShared(k, 32, 128, 0, true);
            }
            for (Kernel k : List.of(flashGqaWgvK64Bf16D64, flashGqaWgvK64F16D64)) gqaShared(k, 64, 64, 0, true);
            for (Kernel k : List.of(flashGqaWgvK64Bf16D128, flashGqaWgvK64F16D128)) gqaShared(k, 64, 128, 0, true);
            // and 32 Q rows a warp (two 64-row tiles of the block)
            for (Kernel k : List.of(flashGqaWgvW32Bf16D64, flashGqaWgvW32F16D64)) gqaShared(k, 32, 64, 32, true);
            for (Kernel k : List.of(flashGqaWgvW32Bf16D128, flashGqaWgvW32F16D128)) gqaShared(k, 32, 128, 32, true);
            // the overlapped kernel: three stages
            for (Kernel k : List.of(flashGqaWgoBf16D64, flashGqaWgoF16D64)) gqaShared(k, 32, 64, 32, true, 3);
            for (Kernel k : List.of(flashGqaWgoBf16D128, flashGqaWgoF16D128)) gqaShared(k, 32, 128, 32, true, 3);
            // the warp-specialised kernel: four stages of 64-key tiles, the two computing warpgroups' 64-row Q tiles
            for (Kernel k : List.of(flashGqaWsBf16D64, flashGqaWsF16D64)) gqaShared(k, 64, 64, 32, true, 4);
            for (Kernel k : List.of(flashGqaWsBf16D128, flashGqaWsF16D128)) gqaShared(k, 64, 128, 32, true, 4);
            siluMul = byName.get("activation").kernel("silu_mul", struct("silu_mul",
                    ptr("x"), ptr("out"), i64("n"), i32("inner"), i32("dtype"), i32("x_dtype")));
            randomNormal = byName.get("random").kernel("random_normal", struct("random_normal",
                    ptr("out"), i64("seed"), i64("count"), f32("mean"), f32("std"), i32("dtype")));
            convertFromF32 = convert.kernel("convert_from_f32", struct("convert_from_f32",
                    ptr("in"), ptr("out"), i64("count"), i32("dtype")));
            splitFromF32 = convert.kernel("split_from_f32", struct("split_from_f32",
                    ptr("in"), ptr("out"), i64("count"), i32("dtype")));
            sumHalves = convert.kernel("sum_halves", struct("sum_halves",
                    ptr("in"), ptr("out"), ptr("bias"), i64("rows"), i32("cols"), i32("bias_dtype")));
            biasAdd = convert.kernel("bias_add", struct("bias_add",
                    ptr("out"), ptr("bias"), i64("rows"), i32("cols"), i32("dtype")));
            probe = convert.kernel("probe", struct("probe", ptr("out"), i32("n")));
            CudaModule split = byName.get("split_attention");
            for (int k = 1; k <= 8; k++) splitAttention[k - 1] = split.kernel("split_attention_" + k, splitParams("split_attention_" + k));
            splitMmaBf16D64 = split.kernel("split_attention_mma_bf16_d64", splitParams("split_attention_mma_bf16_d64"));
            splitMmaBf16D128 = split.kernel("split_attention_mma_bf16_d128", splitParams("split_attention_mma_bf16_d128"));
            splitMmaF16D64 = split.kernel("split_attention_mma_f16_d64", splitParams("split_attention_mma_f16_d64"));
            splitMmaF16D128 = split.kernel("split_attention_mma_f16_d128", splitParams("split_attention_mma_f16_d128"));
            attentionCombine = split.kernel("attention_combine", struct("attention_combine",
                    ptr("part_acc"), ptr("part_ml"), ptr("out"), i32("heads"), i32("head_dim"), i32("splits"), i32("out_dtype")));
            CudaModule gemv = byName.get("gemv");
            gemv1 = gemv.kernel("gemv1", gemvParams("gemv1"));
            gemv2 = gemv.kernel("gemv2", gemvParams("gemv2"));
            gemv4 = gemv.kernel("gemv4", gemvParams("gemv4"));
            gemv8 = gemv.kernel("gemv8", gemvParams("gemv8"));
            gemv1Glu = gemv.kernel("gemv1_glu", gemvParams("gemv1_glu"));
            gemv2Glu = gemv.kernel("gemv2_glu", gemvParams("gemv2_glu"));
            gemv4Glu = gemv.kernel("gemv4_glu", gemvParams("gemv4_glu"));
            gemv8Glu = gemv.kernel("gemv8_glu", gemvParams("gemv8_glu"));
            argmaxRows = byName.get("select").kernel("argmax_rows", struct("argmax_rows",
                    ptr("logits"), ptr("out"), i32("rows"), i32("vocab")));
            sampleRows = byName.get("select").kernel("sample_rows", struct("sample_rows",
                    ptr("logits"), ptr("items"), ptr("weights"), ptr("out"), i32("vocab")));
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
    }

    private static KernelParams gemvParams(String name) {
        return struct(name, ptr("x"), ptr("w"), ptr("bias"), ptr("out"), i32("n"), i32("in"), i32("out_f"),
                i32("dtype"), i32("bias_dtype"), i32("glu_inner"));
    }

    /** SplitAttentionParams of split_attention.cu. */
    private static KernelParams splitParams(String kernel) {
        return struct(kernel, ptr("q"), ptr("k_cache"), ptr("v_cache"), ptr("out"), ptr("part_acc"), ptr("part_ml"),
                ptr("query_starts"), ptr("context_lens"), ptr("block_tables"), ptr("row_list"), i32("num_seqs"),
                i32("num_heads"), i32("num_kv_heads"), i32("head_dim"), i32("block_size"), i32("max_blocks_per_seq"),
                i32("sliding_window"), i32("dtype"), i32("splits"), i32("chunk"), i32("out_dtype"), f32("scale"),
                i32("heads_fastest"));
    }

    /**
     * Gives a grouped-query flash kernel with {@code keys}-key tiles at head size {@code headDim} its dynamic shared
     * memory: {@code stages} stages of a K and a V tile of 16-bit values, then {@code qRows} Q rows (0 where Q stays in
     * registers) for each of its 4 warps, and with {@code wgmma} 1 KB more, as those kernels align their tiles to
     * 1 KB: the layout flash_attention_gqa (flash_attention.cu) carves its dynamic shared memory into.
     */
    private static void gqaShared(Kernel k, int keys, int headDim, int qRows, boolean wgmma, int stages) {
        k.withDynamicShared(stages * 2 * keys * headDim * 2 + 4 * qRows * headDim * 2 + (wgmma ? 1024 : 0));
    }

    /** {@link #gqaShared(Kernel, int, int, int, boolean, int)} with two stages. */
    private static void gqaShared(Kernel k, int keys, int headDim, int qRows, boolean wgmma) {
        gqaShared(k, keys, headDim, qRows, wgmma, 2);
    }

    /** FlashAttentionParams of flash_attention.cu. */
    private static KernelParams flashParams(String kernel) {
        return struct(kernel, ptr("q"), ptr("k_cache"), ptr("v_cache"), ptr("out"), ptr("work"), ptr("query_starts"),
                ptr("context_lens"), ptr("block_tables"), i32("num_heads"), i32("num_kv_heads"), i32("block_size"),
                i32("max_blocks_per_seq"), i32("sliding_window"), i32("out_dtype"), f32("scale"), ptr("rope_cos"),
                ptr("rope_sin"), i32("q_stride"));
    }

    /** Blocks for a grid-stride element-wise kernel over {@code total} elements of 256 threads each. */
    static int elementBlocks(long total) {
        return (int) Math.max(1, Math.min((total + 255) / 256, 1 << 16));
    }

    @Override
    public void close() {
        for (CudaModule m : modules) m.close();
        modules.clear();
    }
}
