/// What a `vjp` rule sees and how it adds backward nodes: the forward node, the gradient of its
/// output, which inputs need a gradient, and `emit` for new nodes (named `<node>.<suffix>`,
/// phase backward).
public final class GradientBuilder {
    public let node: Graph.Node
    /// Gradient of the node's output.
    public let gradOutput: Graph.ValueID
    /// needs[i]: input i needs a gradient.
    public let needs: [Bool]
    var graph: Graph

    init(graph: Graph, node: Graph.Node, gradOutput: Graph.ValueID, needs: [Bool]) {
        self.graph = graph
        self.node = node
        self.gradOutput = gradOutput
        self.needs = needs
    }

    public func input(_ i: Int) -> Graph.ValueID { node.inputs[i] }
    public func shape(_ id: Graph.ValueID) -> Shape { graph[id].shape }
    public var output: Graph.ValueID { node.output }

    public func emit(_ suffix: String, _ op: any Primitive, _ inputs: [Graph.ValueID]) throws -> Graph.ValueID {
        try graph.addNode(name: "\(node.name).\(suffix)", op: op, inputs: inputs, phase: .backward)
    }

    /// emits only when input i needs a gradient.
    public func gradient(_ i: Int, _ make: () throws -> Graph.ValueID) rethrows -> Graph.ValueID? {
        i < needs.count && needs[i] ? try make() : nil
    }
}
