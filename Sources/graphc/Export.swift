import ArgumentParser
import Foundation
import Kiln

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model's eval-mode graph and weights as ONNX (opset 17), to run in ONNX Runtime or anything else that reads ONNX."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case onnx }

    @OptionGroup var model: ModelOptions
    @OptionGroup var weights: WeightOptions

    @Option(help: "Output format.") var format: Format = .onnx
    @Option(help: "Where to write the model (.onnx).") var output: String
    @Flag(help: "Keep BatchNormalization nodes (default: folded into the convolution before them).") var keepBatchnorm = false

    func run() throws {
        try fail {
            let layers = try model.layers()
            let graph = try Compiler.inference(layers, input: try model.inputShape(batch: 1), fuse: false)
            // Without --weights a zoo model is exported with its initial weights (the architecture,
            // e.g. to fine-tune elsewhere); an .onnx model keeps its own.
            let store: ParameterStore
            if weights.weights == nil && !model.isONNX {
                FileHandle.standardError.write(Data("no --weights: exporting \(model.model) with freshly initialised weights\n".utf8))
                store = ParameterStore(graph: graph)
            } else {
                store = try weights.parameters(for: graph, model: model)
            }
            let options = ONNXExport.Options(keepBatchNorm: keepBatchnorm, metadata: ["kiln.model": model.model])
            try ONNXExport.write(graph, parameters: store, to: URL(fileURLWithPath: output), options: options)
        }
    }
}
