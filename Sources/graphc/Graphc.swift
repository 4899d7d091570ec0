import ArgumentParser
import Foundation
import Kiln
import KilnModels

@main
struct Graphc: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graphc",
        abstract: "Kiln's graph compiler: inspect and run zoo models.",
        subcommands: [Summary.self, Dump.self, Run.self, Grad.self, Export.self, Conformance.self]
    )
}

/// Options every subcommand that builds a model shares: a zoo name or an .onnx file.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model name (\(Zoo.names.joined(separator: ", "))) or an .onnx file.")
    var model: String

    @Option(help: "Number of output classes (zoo default 1000; for an .onnx file, resizes its classifier).")
    var classes: Int?

    @Option(help: "Width (channel) multiplier, e.g. 0.35 for MobileNetV2-0.35.")
    var width: Double?

    @Option(help: "Input side in pixels (default: the model's, 224, or the .onnx file's declared input).")
    var inputSize: Int?

    @Option(
        help:
            "With an .onnx file: the classifier node --classes resizes and frozen training trains (default: the last Gemm, MatMul or 1×1 Conv)."
    )
    var classifier: String?

    var isONNX: Bool { model.lowercased().hasSuffix(".onnx") }

    func onnxModel() throws -> ONNXModel {
        try ONNXModel(contentsOf: URL(fileURLWithPath: model), classes: classes, classifier: classifier)
    }

    func layers() throws -> any Layer {
        if isONNX { return try onnxModel() }
        return try Zoo.model(model, classes: classes ?? 1000, width: width)
    }

    /// The input shape for `batch` images: [batch, 3, side, side] for the zoo, the file's declared
    /// shape (batch and, with --input-size, the spatial sides replaced) for ONNX.
    func inputShape(batch: Int) throws -> Shape {
        guard batch >= 1 else { throw ValidationError("batch must be positive") }
        if isONNX {
            let declared = try onnxModel().declaredInputShape
            var dims = declared.enumerated().map { k, d in k == 0 ? batch : (d ?? inputSize ?? 224) }
            if let inputSize, dims.count == 4 { (dims[2], dims[3]) = (inputSize, inputSize) }
            return Shape(dims)
        }
        let side = try inputSize ?? Zoo.entry(model).defaultInputSize
        guard side >= 1 else { throw ValidationError("input size must be positive") }
        return [batch, 3, side, side]
    }

    /// Parameter-name prefixes of the classifier (what frozen training trains).
    func classifierPrefixes() throws -> [String] {
        isONNX ? try onnxModel().classifierParameters : [try Zoo.entry(model).classifier]
    }

    /// The classifier's node name (whose input is the pooled feature vector).
    func classifierNode() throws -> String {
        if isONNX {
            guard let name = try onnxModel().classifier else { throw ValidationError("\(model) has no classifier node") }
            return name
        }
        return try Zoo.entry(model).classifier
    }

    func trace(batch: Int, withLoss: Bool = false) throws -> Graph {
        try Graph.trace(layers(), input: inputShape(batch: batch), withLoss: withLoss)
    }
}
