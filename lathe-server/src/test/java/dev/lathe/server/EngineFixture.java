package dev.lathe.server;

/** The test model's engine, for tests outside this package. */
public final class EngineFixture {
    private EngineFixture() {}

    public static dev.lathe.core.engine.Engine engine(String name, int maxWaiting) {
        return TestModels.engine(name, maxWaiting);
    }
}
