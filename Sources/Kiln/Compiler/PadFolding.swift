/// Folds a zero-padding node into the convolution that is its only reader: Keras' stride-2
/// `ZeroPadding2D` + 'valid' conv becomes one conv with asymmetric padding, so the padded copy of
/// the activation (and its cropping backward pass) never exists. The conv keeps its name and
/// lists the pad among the nodes it computes (`fused`).
enum PadFoldingPass {
    static func apply(_ graph: Graph) throws -> Graph {
        var padOfConv: [Int: Graph.Node] = [:]
        for pad in graph.nodes where pad.op is ZeroPad2DOp && pad.phase == .forward {
            guard let conv = graph.soleReader(of: pad.output), conv.op is Conv2DOp, conv.inputs[0] == pad.output,
                !conv.inputs.dropFirst().contains(pad.output)
            else { continue }
            padOfConv[conv.index] = pad
        }
        guard !padOfConv.isEmpty else { return graph }
        let folded = Set(padOfConv.values.map(\.index))

        var rewrite = try GraphRewrite(graph)
        for node in graph.nodes where !folded.contains(node.index) {
            guard let pad = padOfConv[node.index], var conv = node.op as? Conv2DOp, let zero = pad.op as? ZeroPad2DOp else {
                try rewrite.copy(node)
                continue
            }
            conv.padding = Padding(
                top: conv.padding.top + zero.padding.top, left: conv.padding.left + zero.padding.left,
                bottom: conv.padding.bottom + zero.padding.bottom, right: conv.padding.right + zero.padding.right)
            try rewrite.copy(node, op: conv, inputs: [pad.inputs[0]] + node.inputs.dropFirst(), fused: pad.fused + node.fused)
        }
        return rewrite.finish()
    }
}
