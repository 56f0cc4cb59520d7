package dev.lathe.cli;

import dev.lathe.core.engine.EngineConfig;
import picocli.CommandLine.Option;

/** The scheduler's admission policy flags, shared by {@code serve} and {@code bench throughput}. */
final class AdmissionOptions {
    @Option(names = "--guarantee-no-evict", description = "admit a request only while every running one's prompt + max"
            + " tokens fit in the KV cache, so none is preempted (default: admit what fits now, preempt when blocks run out)")
    boolean guaranteeNoEvict;

    @Option(names = "--admission-watermark", paramLabel = "F", defaultValue = "" + EngineConfig.DEFAULT_ADMISSION_WATERMARK,
            description = "share of the KV blocks a request may not take while others run, so that they can grow before"
                    + " one is preempted; 0 admits down to the last block (default: ${DEFAULT-VALUE})")
    double admissionWatermark;
}
