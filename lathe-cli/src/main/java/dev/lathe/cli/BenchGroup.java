package dev.lathe.cli;

import picocli.CommandLine.Command;

/** {@code lathe bench ...}: benchmarks whose JSON records go to bench/results/. */
@Command(name = "bench", description = "Benchmarks (records for bench/results/).",
        subcommands = {BenchLatencyCommand.class, BenchCommand.class, BenchServingCommand.class})
final class BenchGroup {
}
