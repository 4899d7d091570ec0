import ArgumentParser
import Kiln
import KilnModels

@main
struct Graphc: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graphc",
        abstract: "Kiln's graph compiler: inspect and run zoo models.",
        subcommands: [Summary.self, Dump.self, Run.self, Grad.self]
    )
}

/// Options every subcommand that builds a zoo model shares.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model name: \(Zoo.names.joined(separator: ", ")).")
    var model: String

    @Option(help: "Number of output classes.")
    var classes: Int = 1000

    @Option(help: "Width (channel) multiplier, e.g. 0.35 for MobileNetV2-0.35.")
    var width: Double?

    @Option(help: "Input side in pixels (default: the model's, 224).")
    var inputSize: Int?

    func trace(batch: Int, withLoss: Bool = false) throws -> Graph {
        let layers = try Zoo.model(model, classes: classes, width: width)
        let side = try inputSize ?? Zoo.entry(model).defaultInputSize
        guard side >= 1, batch >= 1 else { throw ValidationError("input size and batch must be positive") }
        return try Graph.trace(layers, input: [batch, 3, side, side], withLoss: withLoss)
    }
}
