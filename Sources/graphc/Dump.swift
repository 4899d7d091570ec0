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
            let layers = try options.layers()
            let input = try options.inputShape(batch: batch)
            let optimizer = Optimizer.sgd(.init(learningRate: 0.01, momentum: 0.9))
            let graph: Graph =
                switch mode {
                case .inference: try Compiler.inference(layers, input: input, fuse: !unfused)
                case .train: try Compiler.training(layers, input: input, .init(optimizer: optimizer, fuse: !unfused))
                case .frozen:
                    try Compiler.training(
                        layers, input: input, .init(optimizer: optimizer, trainOnly: try options.classifierPrefixes(), fuse: !unfused))
                }
            let plan = Plan(graph)
            try PlanVerifier.verify(plan)
            return PlanDescription(plan)
        }
        print(format == .json ? try description.json() : description.text)
    }
}
