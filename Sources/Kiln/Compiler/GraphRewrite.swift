/// What graph-to-graph passes (padding folding, fusion) share: start from the source graph's
/// non-activation values, copy nodes over (possibly with another op or inputs), and carry the
/// graph-level bookkeeping across.
struct GraphRewrite {
    let source: Graph
    var result = Graph()
    /// Source value index → value in `result`.
    var map: [Int: Graph.ValueID] = [:]

    init(_ source: Graph) throws {
        self.source = source
        for value in source.values where value.role != .activation {
            map[value.id.index] = try result.addValue(
                name: value.name, shape: value.shape, dtype: value.dtype,
                role: value.role, initializer: value.initializer)
        }
    }

    /// The copy of a source value.
    func mapped(_ id: Graph.ValueID) -> Graph.ValueID { map[id.index]! }

    /// Copies `node` with its outputs' names, optionally with another op, inputs (source IDs) or members.
    mutating func copy(
        _ node: Graph.Node, op: (any Primitive)? = nil, inputs: [Graph.ValueID]? = nil,
        fused: [String]? = nil
    ) throws {
        _ = try result.addNode(
            name: node.name, op: op ?? node.op, inputs: (inputs ?? node.inputs).map(mapped),
            phase: node.phase, fused: fused ?? node.fused, outputNames: node.outputs.map { source[$0].name })
        for (old, new) in zip(node.outputs, result.nodes.last!.outputs) { map[old.index] = new }
    }

    /// The rewritten graph, with the source's outputs, frozen set and gradients (of parameters and
    /// of activations, for passes that run after autodiff).
    func finish() -> Graph {
        var graph = result
        graph.outputs = source.outputs.mapValues(mapped)
        graph.frozen = source.frozen
        graph.gradients = source.gradients.mapValues(mapped)
        graph.activationGradients = source.activationGradients.mapValues(mapped)
        return graph
    }
}
