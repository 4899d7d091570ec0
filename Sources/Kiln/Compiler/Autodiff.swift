/// Reverse-mode differentiation as a graph transformation: from the scalar output "loss", walks
/// the forward nodes backwards and appends each op's vjp nodes. A node is differentiated only if
/// one of its inputs needs a gradient — a value needs one when it is a trainable parameter or
/// depends on one — so a frozen prefix gets no backward node and none of its activations is read
/// after the forward pass.
public enum Autodiff {
    public static func differentiate(_ forward: Graph, loss: String = "loss") throws -> Graph {
        guard let lossID = forward.outputs[loss] else { throw GraphError.unknownName("output '\(loss)'") }
        guard forward[lossID].shape.count == 1 else {
            throw GraphError.invalid("loss '\(loss)' has shape \(forward[lossID].shape); autodiff needs a scalar")
        }
        let needs = needsGradient(forward)
        var graph = forward
        var contributions: [Int: [Graph.ValueID]] = [:]
        contributions[lossID.index] = [
            try graph.addNode(
                name: "\(forward[lossID].name).grad_seed",
                op: FillOp(value: 1, shape: forward[lossID].shape),
                inputs: [], phase: .backward)
        ]

        for node in forward.nodes.reversed() where node.phase == .forward && needs[node.output.index] {
            guard let parts = contributions[node.output.index] else { continue }  // does not reach the loss
            let gradOutput = try accumulate(parts, of: forward[node.output], in: &graph)
            graph.activationGradients[forward[node.output].name] = gradOutput
            let builder = GradientBuilder(
                graph: graph, node: node, gradOutput: gradOutput,
                needs: node.inputs.map { needs[$0.index] })
            let grads = try node.op.vjp(builder)
            graph = builder.graph
            for (input, grad) in zip(node.inputs, grads) where needs[input.index] {
                guard let grad else { throw GraphError.invalid("vjp of '\(node.name)' gave no gradient for '\(forward[input].name)'") }
                contributions[input.index, default: []].append(grad)
            }
        }

        for parameter in forward.parameters where forward.isTrainable(parameter) {
            guard let parts = contributions[parameter.id.index] else {
                throw GraphError.invalid("trainable parameter '\(parameter.name)' does not affect '\(loss)'")
            }
            let grad = try accumulate(parts, of: parameter, in: &graph)
            graph.gradients[parameter.name] = grad
        }
        return graph
    }

    /// needs[v]: value v is a trainable parameter or is computed from one.
    static func needsGradient(_ graph: Graph) -> [Bool] {
        var needs = graph.values.map { graph.isTrainable($0) }
        for node in graph.nodes where node.inputs.contains(where: { needs[$0.index] }) {
            needs[node.output.index] = true
        }
        return needs
    }

    /// Sums fan-out contributions with Add nodes named `<value>.grad_accum<k>`.
    private static func accumulate(_ parts: [Graph.ValueID], of value: Graph.Value, in graph: inout Graph) throws -> Graph.ValueID {
        var total = parts[0]
        for (k, part) in parts.dropFirst().enumerated() {
            total = try graph.addNode(name: "\(value.name).grad_accum\(k + 1)", op: AddOp(), inputs: [total, part], phase: .backward)
        }
        return total
    }
}
