import Foundation

/// Replays an ONNX graph into a `GraphBuilder`, node by node. Each ONNX value is either a graph
/// value or a constant known at import time; constants are folded through the shape arithmetic
/// exporters emit and become parameters (initializers) or buffers (everything else) only where a
/// computation reads them.
final class ONNXImporter {
    enum Entry {
        case value(Graph.ValueID)
        case constant(ONNXConstant)
    }

    let model: ONNXModel
    let g: GraphBuilder
    private(set) var env: [String: Entry] = [:]
    private var materialized: [String: Graph.ValueID] = [:]
    /// Constants that become parameters (trainable) when read: the initializers and what layout
    /// ops (Transpose, Reshape, …) fold them into; every other constant becomes a buffer.
    var learnable: Set<String> = []
    /// Initial values of the parameters and buffers created.
    private(set) var tensors: [String: Tensor] = [:]

    // The node being converted.
    private(set) var node = Onnx_NodeProto()
    private(set) var nodeName = ""
    private var emitted = 0

    init(model: ONNXModel, builder: GraphBuilder) {
        self.model = model
        self.g = builder
    }

    func run(_ x: Graph.ValueID) throws -> Graph.ValueID {
        for (name, constant) in model.initializers { env[name] = .constant(constant) }
        learnable = Set(model.initializers.filter { $0.value.isFloat }.keys)
        let shape = g.graph[x].shape
        let declared = model.declaredInputShape
        guard declared.count == shape.rank,
            zip(declared, shape.dims).enumerated().allSatisfy({ k, pair in
                // Batch and (for images) the spatial sides may differ: shapes are re-derived from the input.
                k == 0 || (shape.rank == 4 && k >= 2) || pair.0 == nil || pair.0 == pair.1
            })
        else {
            throw ONNXError(
                file: model.file,
                detail: "input '\(model.inputName)' is declared \(declared.map { $0.map(String.init) ?? "?" }), cannot feed \(shape)")
        }
        env[model.inputName] = .value(x)
        let names = ONNXModel.nodeNames(model.graph)
        for (i, n) in model.graph.node.enumerated() {
            (node, nodeName, emitted) = (n, names[i], 0)
            do {
                try convert()
            } catch let error as ONNXError {
                throw error
            } catch let error as GraphError {
                throw fail("\(error)")
            } catch let error as ShapeRuleError {
                throw fail(error.detail)
            }
        }
        switch env[model.outputName] {
        case let .value(id): return id
        case .constant: throw ONNXError(file: model.file, detail: "output '\(model.outputName)' is a constant: nothing to compute")
        case nil: throw ONNXError(file: model.file, detail: "output '\(model.outputName)' is produced by no node")
        }
    }

    // MARK: errors and attributes

    func fail(_ detail: String) -> ONNXError {
        ONNXError(file: model.file, node: nodeName, op: "\(node.opType), opset \(model.opset)", detail: detail)
    }

    func attribute(_ name: String) -> Onnx_AttributeProto? { node.attribute.first { $0.name == name } }
    func int(_ name: String, _ fallback: Int) -> Int { attribute(name).map { Int(clamping: $0.i) } ?? fallback }
    func float(_ name: String, _ fallback: Float) -> Float { attribute(name).map { $0.f } ?? fallback }
    func ints(_ name: String) -> [Int]? { attribute(name).map { $0.ints.map { Int(clamping: $0) } } }
    func string(_ name: String, _ fallback: String) -> String {
        attribute(name).map { String(decoding: $0.s, as: UTF8.self) } ?? fallback
    }

    // MARK: inputs and outputs

    /// Whether input i is present (ONNX marks an omitted optional input with an empty name).
    func has(_ i: Int) -> Bool { i < node.input.count && !node.input[i].isEmpty }

    func entry(_ i: Int) throws -> Entry {
        guard has(i) else { throw fail("input \(i) is missing") }
        guard let entry = env[node.input[i]] else { throw fail("input '\(node.input[i])' is produced by no earlier node") }
        return entry
    }

    func constant(_ i: Int) throws -> ONNXConstant? {
        if case let .constant(c) = try entry(i) { return c }
        return nil
    }

    func requireConstant(_ i: Int, _ what: String) throws -> ONNXConstant {
        guard let c = try constant(i) else { throw fail("\(what) (input '\(node.input[i])') must be known at import time") }
        return c
    }

    func shape(_ i: Int) throws -> Shape {
        switch try entry(i) {
        case let .value(id): g.graph[id].shape
        case let .constant(c): Shape(c.shape)
        }
    }

    /// Input i as a graph value: a constant becomes a parameter (an initializer) or a buffer.
    func value(_ i: Int, buffer: Bool = false, initializer: Initializer? = nil) throws -> Graph.ValueID {
        switch try entry(i) {
        case let .value(id): return id
        case let .constant(c):
            return try materialize(node.input[i], c, buffer: buffer || !learnable.contains(node.input[i]), initializer: initializer)
        }
    }

    /// A constant as a parameter or buffer holding its values. `initializer` (what training from
    /// scratch starts from) defaults to PyTorch's fan-in uniform for weights, zeros for vectors.
    func materialize(_ name: String, _ c: ONNXConstant, buffer: Bool, initializer: Initializer? = nil) throws -> Graph.ValueID {
        if let id = materialized[name] { return id }
        let fanIn = c.shape.dropFirst().reduce(1, *)
        let start = initializer ?? (c.shape.count >= 2 ? .uniformFanIn(fanIn: fanIn) : .zeros)
        let id = try g.parameter(name, shape: Shape(c.shape), initializer: start, buffer: buffer)
        tensors[g.graph[id].name] = c.tensor()
        materialized[name] = id
        return id
    }

    /// A parameter or buffer of this node that no ONNX value stands for (a resized head, BN's
    /// batch counter), starting from `initializer`.
    func newState(_ name: String, shape: Shape, initializer: Initializer, buffer: Bool = false, dtype: DType = .float32) throws
        -> Graph.ValueID
    {
        if let id = materialized[name] { return id }
        let id = try g.parameter(name, shape: shape, initializer: initializer, buffer: buffer, dtype: dtype)
        materialized[name] = id
        return id
    }

    /// Adds a node named after the ONNX node (further ones `<name>.<suffix>`).
    func emit(_ op: any Primitive, _ inputs: [Graph.ValueID], _ suffix: String? = nil) throws -> Graph.ValueID {
        emitted += 1
        let name = suffix.map { "\(nodeName).\($0)" } ?? (emitted == 1 ? nodeName : "\(nodeName).\(emitted)")
        let id = try g.apply(op, inputs, named: name)
        let bytes = try checkedCount(shapeOf(id).dims).multipliedReportingOverflow(by: 4)
        guard !bytes.overflow, bytes.partialValue <= LoadLimits.maxBytes else { throw fail("output shape \(shapeOf(id)) is too large") }
        return id
    }

    func output(_ k: Int = 0, _ id: Graph.ValueID) { if k < node.output.count { env[node.output[k]] = .value(id) } }
    func output(_ k: Int = 0, _ c: ONNXConstant) { if k < node.output.count { env[node.output[k]] = .constant(c) } }

    func shapeOf(_ id: Graph.ValueID) -> Shape { g.graph[id].shape }

    /// The element count of `dims`, refusing negative sizes and overflow (shapes come from the file).
    func checkedCount(_ dims: [Int]) throws -> Int {
        try HostileSizes(file: model.file) { [self] in fail($0) }.elementCount(dims, "shape")
    }

    /// Normalises a possibly negative axis for a tensor of `rank`.
    func axis(_ a: Int, rank: Int) throws -> Int {
        let k = a < 0 ? a + rank : a
        guard (0..<rank).contains(k) else { throw fail("axis \(a) out of range for rank \(rank)") }
        return k
    }
}
