import Foundation
import SwiftProtobuf

/// Writes an inference graph as an ONNX model (opset 17): the unfused eval-mode graph
/// (`Compiler.inference(…, fuse: false)`), its parameters as initializers named by their
/// state_dict keys, the batch dimension symbolic. BatchNorm after a convolution that feeds nothing
/// else is folded into it unless `keepBatchNorm`. Written atomically; non-finite weights refused.
public enum ONNXExport {
    public struct Options: Sendable {
        public var keepBatchNorm = false
        /// Stored as the model's metadata_props (class names, the run it came from, …).
        public var metadata: [String: String] = [:]
        public init(keepBatchNorm: Bool = false, metadata: [String: String] = [:]) {
            (self.keepBatchNorm, self.metadata) = (keepBatchNorm, metadata)
        }
    }

    public static let opset: Int64 = 17

    public static func write(_ graph: Graph, parameters: ParameterStore, to url: URL, options: Options = Options()) throws {
        var writer = ONNXGraphWriter(graph: graph, parameters: parameters, options: options, file: url.path)
        let model = try writer.model()
        try (try model.serializedData() as Data).writeAtomically(to: url)
    }
}

/// Emits ONNX nodes for the Kiln nodes of one graph.
struct ONNXGraphWriter {
    let graph: Graph
    let parameters: ParameterStore
    let options: ONNXExport.Options
    let file: String

    private var nodes: [Onnx_NodeProto] = []
    private var initializers: [Onnx_TensorProto] = []
    private var initialized: Set<String> = []
    /// Kiln value → ONNX value name (folded BN outputs map to their conv's output).
    private var alias: [Graph.ValueID: String] = [:]
    /// BN nodes folded into the conv before them (conv node index → BN node).
    private var foldedInto: [Int: Graph.Node] = [:]
    private var skipped: Set<Int> = []

    init(graph: Graph, parameters: ParameterStore, options: ONNXExport.Options, file: String) {
        (self.graph, self.parameters, self.options, self.file) = (graph, parameters, options, file)
    }

    func fail(_ node: Graph.Node?, _ detail: String) -> ONNXError {
        ONNXError(file: file, node: node?.name, op: node.map { $0.op.kind }, detail: detail)
    }

    mutating func model() throws -> Onnx_ModelProto {
        guard let input = graph.inputs.first(where: { $0.dtype == .float32 }), let logits = graph.outputs["logits"] else {
            throw fail(nil, "the graph has no float input or no logits output")
        }
        planBatchNormFolding()
        for node in graph.nodes where node.phase == .forward && !skipped.contains(node.index) {
            try emit(node)
        }
        let batchDim = { (shape: Shape) -> [Onnx_TensorShapeProto.Dimension] in
            shape.dims.enumerated().map { k, d in
                k == 0 ? .with { $0.dimParam = "batch" } : .with { $0.dimValue = Int64(d) }
            }
        }
        let valueInfo = { (name: String, shape: Shape) in
            Onnx_ValueInfoProto.with {
                $0.name = name
                $0.type = .with { t in
                    t.tensorType = .with {
                        $0.elemType = 1
                        $0.shape = .with { $0.dim = batchDim(shape) }
                    }
                }
            }
        }
        var output = name(of: logits)
        if output != "logits" {
            nodes.append(node("Identity", [output], ["logits"], name: "logits"))
            output = "logits"
        }
        let body = Onnx_GraphProto.with {
            $0.name = "kiln"
            $0.node = nodes
            $0.initializer = initializers
            $0.input = [valueInfo(input.name, input.shape)]
            $0.output = [valueInfo(output, graph[logits].shape)]
        }
        return Onnx_ModelProto.with {
            $0.irVersion = 8
            $0.producerName = "Kiln"
            $0.opsetImport = [.with { $0.version = ONNXExport.opset }]
            $0.graph = body
            $0.metadataProps = options.metadata.sorted { $0.key < $1.key }.map { entry in
                .with {
                    $0.key = entry.key
                    $0.value = entry.value
                }
            }
        }
    }

    /// Conv → BN pairs where the conv's output feeds only the BN (and is no graph output).
    private mutating func planBatchNormFolding() {
        guard !options.keepBatchNorm else { return }
        for node in graph.nodes where node.op is BatchNormOp {
            guard let producer = graph[node.inputs[0]].producer, graph.nodes[producer].op is Conv2DOp,
                graph.soleReader(of: node.inputs[0])?.index == node.index
            else { continue }
            foldedInto[producer] = node
            skipped.insert(node.index)
        }
    }

    private func name(of value: Graph.ValueID) -> String { alias[value] ?? graph[value].name }

    private func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String, _ attributes: [Onnx_AttributeProto] = [])
        -> Onnx_NodeProto
    {
        Onnx_NodeProto.with {
            $0.opType = op
            $0.name = name
            $0.input = inputs
            $0.output = outputs
            $0.attribute = attributes
        }
    }

    private func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        .with {
            $0.name = name
            $0.type = .ints
            $0.ints = values.map(Int64.init)
        }
    }
    private func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        .with {
            $0.name = name
            $0.type = .int
            $0.i = Int64(value)
        }
    }
    private func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        .with {
            $0.name = name
            $0.type = .float
            $0.f = value
        }
    }

    /// Adds an initializer (once per name).
    private mutating func initializer(_ name: String, shape: [Int], floats: [Float]) throws {
        guard !initialized.contains(name) else { return }
        if let bad = floats.firstIndex(where: { !$0.isFinite }) {
            throw ONNXError(file: file, detail: "'\(name)' holds \(floats[bad]) at \(bad): refusing to write non-finite weights")
        }
        initialized.insert(name)
        initializers.append(
            .with {
                $0.name = name
                $0.dims = shape.map(Int64.init)
                $0.dataType = 1
                $0.rawData = floats.withUnsafeBufferPointer { Data(buffer: $0) }
            })
    }

    private mutating func constant(_ name: String, ints values: [Int64]) -> String {
        if !initialized.contains(name) {
            initialized.insert(name)
            initializers.append(
                .with {
                    $0.name = name
                    $0.dims = [Int64(values.count)]
                    $0.dataType = 7
                    $0.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
                })
        }
        return name
    }

    private mutating func scalar(_ name: String, _ value: Float) throws -> String {
        try initializer(name, shape: [], floats: [value])
        return name
    }

    /// The ONNX name of input i, writing a parameter or buffer as an initializer.
    private mutating func input(_ node: Graph.Node, _ i: Int) throws -> String {
        let value = graph[node.inputs[i]]
        if value.role == .parameter || value.role == .buffer {
            guard let tensor = parameters[value.name] else { throw fail(node, "no tensor for '\(value.name)'") }
            try initializer(value.name, shape: value.shape.dims, floats: tensor.scalars)
        }
        return name(of: node.inputs[i])
    }

    private mutating func emit(_ n: Graph.Node) throws {
        let out = [graph[n.output].name]
        func x(_ i: Int) throws -> String { try input(n, i) }
        switch n.op {
        case let op as Conv2DOp:
            let w = graph[n.inputs[1]]
            var inputs = [try x(0)]
            if let bn = foldedInto[n.index] {
                inputs += try foldedConv(n, bn)
                alias[bn.output] = out[0]
            } else {
                inputs += try (1..<n.inputs.count).map { try x($0) }
            }
            let p = op.padding
            nodes.append(
                node(
                    "Conv", inputs, out, name: n.name,
                    [
                        ints("kernel_shape", [w.shape[2], w.shape[3]]), ints("strides", [op.stride.h, op.stride.w]),
                        ints("pads", [p.top, p.left, p.bottom, p.right]), int("group", op.groups),
                    ]))
        case let op as BatchNormOp:
            let inputs = try (0..<5).map { try x($0) }
            nodes.append(
                node("BatchNormalization", inputs, out, name: n.name, [float("epsilon", op.eps), float("momentum", 1 - op.momentum)]))
        case is ReLUOp: nodes.append(node("Relu", [try x(0)], out, name: n.name))
        case is ReLU6Op:
            nodes.append(node("Clip", [try x(0), try scalar("kiln.zero", 0), try scalar("kiln.six", 6)], out, name: n.name))
        case is AddOp: nodes.append(node("Add", [try x(0), try x(1)], out, name: n.name))
        case let op as BinaryOp: nodes.append(node(op.op.rawValue, [try x(0), try x(1)], out, name: n.name))
        case let op as UnaryOp: try unary(op.function, n, try x(0), out[0])
        case let op as Pool2DOp:
            let end = op.endPadding ?? op.padding
            var attributes = [
                ints("kernel_shape", [op.kernel.h, op.kernel.w]), ints("strides", [op.stride.h, op.stride.w]),
                ints("pads", [op.padding.h, op.padding.w, end.h, end.w]), int("ceil_mode", op.ceilMode ? 1 : 0),
            ]
            var type = "MaxPool"
            if case let .average(include) = op.reduction {
                type = "AveragePool"
                attributes.append(int("count_include_pad", include ? 1 : 0))
            }
            nodes.append(node(type, [try x(0)], out, name: n.name, attributes))
        case is GlobalAvgPoolOp: nodes.append(node("GlobalAveragePool", [try x(0)], out, name: n.name))
        case let op as ZeroPad2DOp:
            let p = op.padding
            let pads = constant("\(n.name).pads", ints: [0, 0, p.top, p.left, 0, 0, p.bottom, p.right].map(Int64.init))
            nodes.append(node("Pad", [try x(0), pads], out, name: n.name))
        case is FlattenOp: nodes.append(node("Flatten", [try x(0)], out, name: n.name, [int("axis", 1)]))
        case let op as ReshapeOp:
            // The batch dimension stays symbolic: 0 copies it from the input.
            let dims = op.shape.dims.enumerated().map { k, d in k == 0 && d == graph[n.inputs[0]].shape[0] ? 0 : Int64(d) }
            nodes.append(node("Reshape", [try x(0), constant("\(n.name).shape", ints: dims)], out, name: n.name))
        case is LinearOp:
            let inputs = try (0..<n.inputs.count).map { try x($0) }
            nodes.append(node("Gemm", inputs, out, name: n.name, [int("transB", 1)]))
        case is DropoutOp: nodes.append(node("Identity", [try x(0)], out, name: n.name))
        case let op as SoftmaxOp: nodes.append(node(op.log ? "LogSoftmax" : "Softmax", [try x(0)], out, name: n.name, [int("axis", -1)]))
        case let op as TransposeOp: nodes.append(node("Transpose", [try x(0)], out, name: n.name, [ints("perm", op.perm)]))
        case let op as ConcatOp:
            nodes.append(node("Concat", try (0..<n.inputs.count).map { try x($0) }, out, name: n.name, [int("axis", op.axis)]))
        case let op as SliceOp:
            let rank = op.start.count
            // A negative step's end may lie before index 0: a very negative end clamps to "before the start".
            let ends = (0..<rank).map { k -> Int64 in
                let end = op.start[k] + op.size[k] * op.step[k]
                return end < 0 ? Int64.min / 2 : Int64(end)
            }
            let inputs = [
                try x(0), constant("\(n.name).starts", ints: op.start.map(Int64.init)), constant("\(n.name).ends", ints: ends),
                constant("\(n.name).axes", ints: (0..<rank).map(Int64.init)), constant("\(n.name).steps", ints: op.step.map(Int64.init)),
            ]
            nodes.append(node("Slice", inputs, out, name: n.name))
        case let op as ReduceOp:
            if op.mean {
                nodes.append(
                    node("ReduceMean", [try x(0)], out, name: n.name, [ints("axes", op.axes), int("keepdims", op.keepDims ? 1 : 0)]))
            } else {
                let axes = constant("\(n.name).axes", ints: op.axes.map(Int64.init))
                nodes.append(node("ReduceSum", [try x(0), axes], out, name: n.name, [int("keepdims", op.keepDims ? 1 : 0)]))
            }
        case let op as BroadcastToOp:
            nodes.append(node("Expand", [try x(0), constant("\(n.name).shape", ints: op.shape.dims.map(Int64.init))], out, name: n.name))
        default:
            throw fail(n, "has no ONNX export (export the unfused inference graph: Compiler.inference(…, fuse: false))")
        }
    }

    /// The conv's weight and bias with the BN that follows it folded in (running statistics).
    private mutating func foldedConv(_ conv: Graph.Node, _ bn: Graph.Node) throws -> [String] {
        guard let op = bn.op as? BatchNormOp else { return [] }
        let (graph, parameters, file) = (self.graph, self.parameters, self.file)
        let missing = { (id: Graph.ValueID) in
            ONNXError(file: file, node: conv.name, op: conv.op.kind, detail: "no tensor for '\(graph[id].name)'")
        }
        let tensor = { (id: Graph.ValueID) throws -> [Float] in
            guard let t = parameters[graph[id].name] else { throw missing(id) }
            return t.scalars
        }
        let w = try tensor(conv.inputs[1]), wName = graph[conv.inputs[1]].name
        let (gamma, beta, mean, variance) = (
            try tensor(bn.inputs[1]), try tensor(bn.inputs[2]), try tensor(bn.inputs[3]), try tensor(bn.inputs[4])
        )
        let outputs = graph[conv.inputs[1]].shape[0], per = w.count / max(outputs, 1)
        let bias = conv.inputs.count > 2 ? try tensor(conv.inputs[2]) : [Float](repeating: 0, count: outputs)
        var folded = w, shift = [Float](repeating: 0, count: outputs)
        for o in 0..<outputs {
            let scale = Double(gamma[o]) / (Double(variance[o]) + Double(op.eps)).squareRoot()
            for i in 0..<per { folded[o * per + i] = Float(Double(w[o * per + i]) * scale) }
            shift[o] = Float((Double(bias[o]) - Double(mean[o])) * scale + Double(beta[o]))
        }
        let module = wName.hasSuffix(".weight") ? String(wName.dropLast(".weight".count)) : conv.name
        try initializer(wName, shape: graph[conv.inputs[1]].shape.dims, floats: folded)
        try initializer("\(module).bias", shape: [outputs], floats: shift)
        return [wName, "\(module).bias"]
    }

    private mutating func unary(_ f: UnaryFunction, _ n: Graph.Node, _ x: String, _ out: String) throws {
        let simple: [String: String] = [
            "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Neg": "Neg", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
            "Reciprocal": "Reciprocal", "Abs": "Abs", "Softplus": "Softplus", "Softsign": "Softsign", "Hardswish": "HardSwish",
        ]
        if let op = simple[f.description] {
            nodes.append(node(op, [x], [out], name: n.name))
            return
        }
        switch f {
        case .silu:
            nodes.append(node("Sigmoid", [x], ["\(n.name).sigmoid"], name: "\(n.name).sigmoid"))
            nodes.append(node("Mul", [x, "\(n.name).sigmoid"], [out], name: n.name))
        case let .hardSigmoid(a, b): nodes.append(node("HardSigmoid", [x], [out], name: n.name, [float("alpha", a), float("beta", b)]))
        case let .leakyReLU(a): nodes.append(node("LeakyRelu", [x], [out], name: n.name, [float("alpha", a)]))
        case let .elu(a): nodes.append(node("Elu", [x], [out], name: n.name, [float("alpha", a)]))
        case let .selu(a, g): nodes.append(node("Selu", [x], [out], name: n.name, [float("alpha", a), float("gamma", g)]))
        case let .clip(lo, hi):
            nodes.append(node("Clip", [x, try scalar("\(n.name).min", lo), try scalar("\(n.name).max", hi)], [out], name: n.name))
        case let .pow(p): nodes.append(node("Pow", [x, try scalar("\(n.name).exponent", p)], [out], name: n.name))
        case let .affine(s, t):
            nodes.append(node("Mul", [x, try scalar("\(n.name).scale", s)], ["\(n.name).scaled"], name: "\(n.name).scaled"))
            nodes.append(node("Add", ["\(n.name).scaled", try scalar("\(n.name).shift", t)], [out], name: n.name))
        default: throw fail(n, "has no ONNX export")
        }
    }
}
