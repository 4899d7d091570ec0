/// The static graph: values (inputs, parameters, buffers, activations) and the nodes that compute
/// them, in a topological order. Compiler passes read a Graph and produce a Graph or a Plan.
public struct Graph: Sendable {
    public struct ValueID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let index: Int
        public static func < (a: Self, b: Self) -> Bool { a.index < b.index }
        public var description: String { "%\(index)" }
    }

    public enum Role: String, Sendable {
        /// Fed by the caller on every run (images, labels).
        case input
        /// Learnable weight, named by its state_dict key.
        case parameter
        /// Non-learnable state saved with the model (BN running statistics).
        case buffer
        /// Computed by a node.
        case activation
        /// Optimiser state (momentum buffers, Adam moments), kept across steps, not in the state_dict.
        case optimizerState
    }

    /// Where a node sits in a training step.
    public enum Phase: String, Sendable {
        case forward, backward, update
    }

    public struct Value: Sendable {
        public let id: ValueID
        public let name: String
        public let shape: Shape
        public let dtype: DType
        public let role: Role
        /// How a parameter or buffer starts out; nil for inputs and activations.
        public let initializer: Initializer?
        /// Index of the node that produces an activation.
        public let producer: Int?
    }

    public struct Node: Sendable {
        public let index: Int
        /// Full module path, e.g. `layer1.0.conv1`; unique in the graph.
        public let name: String
        public let op: any Primitive
        public let inputs: [ValueID]
        /// outputs[0] is the node's result; further outputs are tensors saved for backward.
        public let outputs: [ValueID]
        public let phase: Phase
        /// Names of the nodes of the unfused graph this node computes (itself when not fused).
        public let fused: [String]

        public var output: ValueID { outputs[0] }
    }

    public private(set) var values: [Value] = []
    public private(set) var nodes: [Node] = []
    /// Graph outputs by role name: "logits", "loss", ….
    public var outputs: [String: ValueID] = [:]
    /// Names of parameters that do not train (see `freeze`). Buffers never train.
    public var frozen: Set<String> = []
    /// Gradient value of each trainable parameter, once the autodiff pass has run.
    public var gradients: [String: ValueID] = [:]
    /// Gradient value of each forward activation the backward pass reaches (for inspection, like
    /// PyTorch's retain_grad; keep them alive with the executor's `keep`).
    public var activationGradients: [String: ValueID] = [:]

    private var valueByName: [String: ValueID] = [:]
    private var nodeNames: Set<String> = []
    /// The use-lists: for each value, the indices of the nodes that read it, in graph order, each
    /// reader once (kept as nodes are added, so passes never rebuild "who reads this").
    private var readerIndices: [[Int]] = []

    public init() {}

    public subscript(id: ValueID) -> Value { values[id.index] }

    public func value(named name: String) throws -> Value {
        guard let id = valueByName[name] else { throw GraphError.unknownName(name) }
        return values[id.index]
    }

    public func node(named name: String) -> Node? { nodes.first { $0.name == name } }

    public var inputs: [Value] { values.filter { $0.role == .input } }
    public var parameters: [Value] { values.filter { $0.role == .parameter } }
    public var buffers: [Value] { values.filter { $0.role == .buffer } }
    public var optimizerStates: [Value] { values.filter { $0.role == .optimizerState } }
    /// Values whose tensors persist across runs and live in a `ParameterStore`.
    public var persistentValues: [Value] { values.filter { [.parameter, .buffer, .optimizerState].contains($0.role) } }
    /// Parameters and buffers in declaration order: the keys of the model's state_dict.
    public var stateValues: [Value] { values.filter { $0.role == .parameter || $0.role == .buffer } }

    public func isTrainable(_ value: Value) -> Bool { value.role == .parameter && !frozen.contains(value.name) }

    /// The nodes that read `id`, in graph order, each once however many of its inputs `id` is.
    public func readers(of id: ValueID) -> [Node] { readerIndices[id.index].map { nodes[$0] } }

    /// The only node reading `id`, when there is exactly one and `id` is no graph output: the
    /// condition for folding or fusing the producer into that reader.
    public func soleReader(of id: ValueID) -> Node? {
        let readers = readerIndices[id.index]
        guard readers.count == 1, !outputs.values.contains(id) else { return nil }
        return nodes[readers[0]]
    }

    // MARK: construction (used by GraphBuilder and compiler passes)

    /// Swaps a node's op for one with the same inputs and output shape (used by the freezing pass).
    mutating func replaceOp(ofNode index: Int, with op: any Primitive) {
        let node = nodes[index]
        nodes[index] = Node(
            index: index, name: node.name, op: op, inputs: node.inputs, outputs: node.outputs,
            phase: node.phase, fused: node.fused)
    }

    public mutating func addValue(
        name: String, shape: Shape, dtype: DType, role: Role,
        initializer: Initializer? = nil, producer: Int? = nil
    ) throws -> ValueID {
        guard valueByName[name] == nil else { throw GraphError.duplicateName(name) }
        let id = ValueID(index: values.count)
        values.append(
            Value(
                id: id, name: name, shape: shape, dtype: dtype, role: role,
                initializer: initializer, producer: producer))
        valueByName[name] = id
        readerIndices.append([])
        return id
    }

    /// Appends a node after running its op's shape rule; a rejected shape becomes a
    /// `GraphError.shapeMismatch` naming the node.
    /// - Parameters:
    ///   - name: the node's module path (unique in the graph).
    ///   - op: what it computes.
    ///   - inputs: the values it reads, in the op's order.
    ///   - phase: forward, backward or update.
    ///   - fused: the unfused nodes this one replaces (default: itself).
    ///   - outputNames: names of the output values (default: the node's name, then
    ///     `<node>:saved<k>` for saved outputs).
    @discardableResult
    public mutating func addNode(
        name: String, op: any Primitive, inputs: [ValueID], phase: Phase = .forward,
        fused: [String]? = nil, outputNames: [String]? = nil
    ) throws -> ValueID {
        guard !nodeNames.contains(name) else { throw GraphError.duplicateName(name) }
        let shapes = inputs.map { values[$0.index].shape }
        let outShapes: [Shape]
        do {
            outShapes = try op.outputShapes(for: shapes)
        } catch let error as ShapeRuleError {
            throw GraphError.shapeMismatch(node: name, op: op.kind, detail: error.detail)
        }
        let index = nodes.count
        var outs: [ValueID] = []
        for (k, shape) in outShapes.enumerated() {
            let valueName = outputNames.map { $0[k] } ?? (k == 0 ? name : "\(name):saved\(k)")
            outs.append(try addValue(name: valueName, shape: shape, dtype: op.outputDType, role: .activation, producer: index))
        }
        nodes.append(Node(index: index, name: name, op: op, inputs: inputs, outputs: outs, phase: phase, fused: fused ?? [name]))
        nodeNames.insert(name)
        for input in Set(inputs) { readerIndices[input.index].append(index) }
        return outs[0]
    }
}
