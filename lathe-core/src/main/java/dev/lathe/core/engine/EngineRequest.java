package dev.lathe.core.engine;

import dev.lathe.core.sampling.SamplingParams;

/**
 * A request as the engine takes it: already tokenised (the front end tokenises and applies chat
 * templates). {@code cacheSalt} separates prefix-cache entries of different tenants (null = shared).
 */
public record EngineRequest(String id, int[] promptIds, SamplingParams params, String cacheSalt) {
    public EngineRequest {
        if (id == null || id.isBlank()) throw new IllegalArgumentException("request id must not be blank");
        if (promptIds == null || promptIds.length == 0) {
            throw new IllegalArgumentException("request " + id + ": the prompt is empty; give at least one token");
        }
        if (params == null) throw new IllegalArgumentException("request " + id + ": sampling params missing");
    }
}
