package dev.lathe.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code lathe} command. */
@Command(name = "lathe", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Lathe: an LLM inference engine. With no --model, commands use the small model shipped in models/.",
        subcommands = {GenerateCommand.class, ChatCommand.class, InspectCommand.class, EvalCommand.class, DoctorCommand.class, BenchGroup.class,
                ServeCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns the exit code; errors print their message, not a stack trace. */
    public static int run(String... args) {
        var cli = new CommandLine(new Main());
        cli.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            String msg = ex.getMessage() == null ? ex.toString() : ex.getMessage();
            cmd.getErr().println("lathe: error: " + msg);
            if (System.getenv("LATHE_DEBUG") != null) ex.printStackTrace(cmd.getErr());
            return 1;
        });
        return cli.execute(args);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[]{"lathe " + (v == null ? "dev" : v) + " (Java " + Runtime.version() + ")"};
        }
    }
}
