/// Records layers into a `Graph` while tracking the module path, so parameters get PyTorch
/// state_dict keys (`layer1.0.conv1.weight`) and nodes get unique, readable names.
public final class GraphBuilder {
    public private(set) var graph = Graph()
    private var scope: [String] = []
    private var nameUses: [String: Int] = [:]

    public init() {}

    /// The current module path, e.g. `layer2.0.downsample.0`.
    public var path: String { scope.joined(separator: ".") }

    /// Runs `body` inside the sub-module `name`.
    public func scoped<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        scope.append(name)
        defer { scope.removeLast() }
        return try body()
    }

    public func input(_ name: String, shape: Shape, dtype: DType = .float32) throws -> Graph.ValueID {
        try graph.addValue(name: name, shape: shape, dtype: dtype, role: .input)
    }

    /// Declares a learnable parameter (or, with `buffer`, non-learnable state) of the current module.
    public func parameter(
        _ local: String, shape: Shape, initializer: Initializer,
        buffer: Bool = false, dtype: DType = .float32
    ) throws -> Graph.ValueID {
        let name = scope.isEmpty ? local : "\(path).\(local)"
        return try graph.addValue(
            name: name, shape: shape, dtype: dtype,
            role: buffer ? .buffer : .parameter, initializer: initializer)
    }

    /// Adds a node named after the current module (suffixed `_1`, `_2`, … when a module such as
    /// torchvision's shared `relu` is applied more than once).
    public func apply(_ op: any Primitive, _ inputs: [Graph.ValueID]) throws -> Graph.ValueID {
        let base = scope.isEmpty ? op.kind.lowercased() : path
        let uses = nameUses[base, default: 0]
        nameUses[base] = uses + 1
        return try graph.addNode(name: uses == 0 ? base : "\(base)_\(uses)", op: op, inputs: inputs)
    }

    /// Adds a node under an explicit name (imported graphs), suffixed `_1`, `_2`, … when a value
    /// already has that name.
    public func apply(_ op: any Primitive, _ inputs: [Graph.ValueID], named name: String) throws -> Graph.ValueID {
        var candidate = name
        var k = 0
        while (try? graph.value(named: candidate)) != nil {
            k += 1
            candidate = "\(name)_\(k)"
        }
        return try graph.addNode(name: candidate, op: op, inputs: inputs)
    }

    public func markOutput(_ role: String, _ value: Graph.ValueID) { graph.outputs[role] = value }
}

extension Graph {
    /// Traces `model` on an input of `inputShape` (NCHW, batch first). The result's outputs are
    /// "logits" and, when `withLoss`, "loss": mean cross-entropy against the int64 input "labels".
    public static func trace(_ model: any Layer, input inputShape: Shape, withLoss: Bool = false) throws -> Graph {
        let builder = GraphBuilder()
        let x = try builder.input("input", shape: inputShape)
        let logits = try model.build(x, in: builder)
        builder.markOutput("logits", logits)
        if withLoss {
            let labels = try builder.input("labels", shape: [inputShape[0]], dtype: .int64)
            let loss = try builder.scoped("loss") { try builder.apply(CrossEntropyOp(), [logits, labels]) }
            builder.markOutput("loss", loss)
        }
        return builder.graph
    }
}
