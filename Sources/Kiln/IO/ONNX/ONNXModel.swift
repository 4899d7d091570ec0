import Foundation
import SwiftProtobuf

/// An ONNX model as a Kiln layer: tracing it replays the ONNX graph through the `GraphBuilder`,
/// so the compiler's passes (fusion, memory planning, autodiff, freezing) apply to it as to a
/// model written in the DSL. Parameters and buffers are named after the ONNX initializers; the
/// model's own weights are its published parameters (`pretrainedParameters`).
///
/// With `classes`, the classifier (by default the last Gemm, MatMul or 1×1 convolution) gets
/// that many outputs and fresh weights, the torchvision way of fine-tuning on a new dataset.
public struct ONNXModel: PretrainedLayer, @unchecked Sendable {
    public let file: String
    let graph: Onnx_GraphProto
    /// The default-domain opset the model was exported with.
    public let opset: Int
    let initializers: [String: ONNXConstant]
    /// The graph input that `build`'s argument feeds (the first input that is no initializer).
    public let inputName: String
    /// Its declared shape (nil for a symbolic dimension such as the batch).
    public let declaredInputShape: [Int?]
    public let outputName: String
    /// The input's ONNX element type (1 float, 11 double, …): Kiln computes in float32 whatever it is.
    public let declaredInputType: Int
    /// The head `classes` replaces, and its parameter names (what `--strategy frozen` trains).
    public let classifier: String?
    public let classifierParameters: [String]
    public let classes: Int?

    /// The classifier's module: its weight's name without `.weight` (`classifier.1`), the prefix
    /// frozen training trains; nil when the weight is not named that way.
    public var classifierModule: String? {
        guard let weight = classifierParameters.first, weight.hasSuffix(".weight") else { return classifierParameters.first }
        return String(weight.dropLast(".weight".count))
    }

    /// Reads and checks an .onnx file (a protobuf ModelProto; external data beside it).
    public init(contentsOf url: URL, classes: Int? = nil, classifier: String? = nil) throws {
        let file = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ONNXError(file: file, detail: "cannot read the file (\(error.localizedDescription))")
        }
        try HostileSizes(file: file) { ONNXError(file: file, detail: $0) }.withinLimit(data.count, "the model")
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw ONNXError(file: file, detail: "not a valid ONNX protobuf (\(error))")
        }
        try self.init(model, file: file, folder: url.deletingLastPathComponent(), classes: classes, classifier: classifier)
    }

    init(_ model: Onnx_ModelProto, file: String, folder: URL?, classes: Int?, classifier: String?) throws {
        self.file = file
        graph = model.graph
        let defaultDomain = model.opsetImport.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        opset = Int(clamping: defaultDomain.map(\.version).max() ?? 1)
        for other in model.opsetImport where !(other.domain.isEmpty || other.domain == "ai.onnx") {
            if graph.node.contains(where: { $0.domain == other.domain }) {
                throw ONNXError(file: file, detail: "uses operator domain '\(other.domain)', which Kiln does not import")
            }
        }
        guard !graph.node.isEmpty else { throw ONNXError(file: file, detail: "the graph has no nodes") }
        let decoder = ONNXTensorDecoder(file: file, folder: folder)
        var initializers: [String: ONNXConstant] = [:]
        for tensor in graph.initializer { initializers[tensor.name] = try decoder.decode(tensor, what: tensor.name) }
        self.initializers = initializers
        let inputs = graph.input.filter { initializers[$0.name] == nil }
        guard inputs.count == 1, let input = inputs.first else {
            throw ONNXError(file: file, detail: "Kiln imports graphs with one input, this one has \(inputs.count): \(inputs.map(\.name))")
        }
        inputName = input.name
        declaredInputShape = input.type.tensorType.shape.dim.map { $0.dimValue > 0 ? Int(clamping: $0.dimValue) : nil }
        guard let output = graph.output.first else { throw ONNXError(file: file, detail: "the graph declares no output") }
        outputName = output.name
        declaredInputType = Int(input.type.tensorType.elemType)
        self.classes = classes
        let names = ONNXModel.nodeNames(graph)
        let nodes = model.graph.node
        let heads = nodes.indices.filter { i in
            let node = nodes[i]
            guard ["Gemm", "MatMul", "Conv"].contains(node.opType), node.input.count >= 2, let w = initializers[node.input[1]] else {
                return false
            }
            return node.opType != "Conv" || w.shape.count == 4 && w.shape[2] == 1 && w.shape[3] == 1
        }
        if let classifier {
            guard let i = names.firstIndex(of: classifier) else {
                throw ONNXError(file: file, detail: "no node named '\(classifier)' (--classifier); candidates: \(heads.map { names[$0] })")
            }
            guard heads.contains(i) else {
                throw ONNXError(
                    file: file, node: classifier, op: nodes[i].opType, detail: "is not a Gemm, MatMul or 1×1 Conv with constant weights")
            }
            self.classifier = classifier
        } else {
            self.classifier = heads.last.map { names[$0] }
        }
        if let head = self.classifier, let i = names.firstIndex(of: head) {
            let weight = nodes[i].input[1]
            let module = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : head
            // A head without a bias gets one named `<module>.bias` when it is resized.
            let bias = nodes[i].input.count > 2 && !nodes[i].input[2].isEmpty ? nodes[i].input[2] : "\(module).bias"
            classifierParameters = [weight] + (initializers[bias] != nil || classes != nil ? [bias] : [])
        } else {
            classifierParameters = []
        }
        if classes != nil, self.classifier == nil {
            throw ONNXError(file: file, detail: "no classifier to resize: the graph has no Gemm, MatMul or 1×1 Conv with constant weights")
        }
    }

    /// Node names as Kiln uses them: the ONNX name, else the first output's, made unique.
    static func nodeNames(_ graph: Onnx_GraphProto) -> [String] {
        var used: [String: Int] = [:]
        return graph.node.enumerated().map { i, node in
            let base = !node.name.isEmpty ? node.name : (node.output.first.map { $0.isEmpty ? nil : $0 } ?? nil) ?? "\(node.opType)_\(i)"
            let uses = used[base, default: 0]
            used[base] = uses + 1
            return uses == 0 ? base : "\(base)_\(uses)"
        }
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        try ONNXImporter(model: self, builder: g).run(x)
    }

    /// The tensors of the model's parameters and buffers for an input of `input`'s shape.
    public func parameterTensors(input: Shape) throws -> [String: Tensor] {
        let builder = GraphBuilder()
        let importer = ONNXImporter(model: self, builder: builder)
        _ = try importer.run(try builder.input("input", shape: input))
        return importer.tensors
    }

    /// The model's weights for `graph`; a resized classifier (and anything else the file lacks)
    /// starts from its initialiser.
    public func pretrainedParameters(for graph: Graph, seed: UInt64) throws -> ParameterStore {
        guard let input = graph.inputs.first(where: { $0.dtype == .float32 }) else {
            throw GraphError.invalid("the graph has no float input")
        }
        let tensors = try parameterTensors(input: input.shape)
        let store = ParameterStore(graph: graph, seed: seed)
        for value in graph.stateValues {
            if let t = tensors[value.name], t.shape == value.shape, t.dtype == value.dtype { store[value.name]!.copy(from: t) }
        }
        return store
    }
}
