import ArgumentParser
import Kiln
import KilnModels

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the compiled, fused and memory-planned step of a zoo model."
    )

    enum PlanMode: String, ExpressibleByArgument, CaseIterable {
        case inference, train, frozen
    }

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @OptionGroup var options: ModelOptions

    @Option(help: "inference, train (fine-tune all) or frozen (train only the classifier).")
    var mode: PlanMode = .inference

    @Option(help: "Batch size.")
    var batch: Int = 1

    @Option(help: "text or json.")
    var format: Format = .text

    @Flag(help: "Skip the fusion pass (the unfused plan).")
    var unfused = false

    func run() throws {
        let description = try fail { () -> PlanDescription in
            let layers = try Zoo.model(options.model, classes: options.classes, width: options.width)
            let entry = try Zoo.entry(options.model)
            let side = options.inputSize ?? entry.defaultInputSize
            guard batch >= 1, side >= 1 else { throw ZooError.invalidArgument("batch and input size must be positive") }
            let input: Shape = [batch, 3, side, side]
            let optimizer = Optimizer.sgd(.init(learningRate: 0.01, momentum: 0.9))
            let graph: Graph =
                switch mode {
                case .inference: try Compiler.inference(layers, input: input, fuse: !unfused)
                case .train: try Compiler.training(layers, input: input, .init(optimizer: optimizer, fuse: !unfused))
                case .frozen:
                    try Compiler.training(layers, input: input, .init(optimizer: optimizer, trainOnly: [entry.classifier], fuse: !unfused))
                }
            let plan = Plan(graph)
            try PlanVerifier.verify(plan)
            return PlanDescription(plan)
        }
        print(format == .json ? try description.json() : description.text)
    }
}
