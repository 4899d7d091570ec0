import ArgumentParser
import Kiln

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the torchsummary-style table of a zoo model (layer, output shape, params)."
    )

    @OptionGroup var options: ModelOptions

    func run() throws {
        let graph = try fail { try options.trace(batch: 1) }
        print(GraphSummary(graph).table)
    }
}
