/// The compiler's entry points: a model and an input shape in, a graph ready to plan and run out.
public enum Compiler {
    /// Eval-mode forward: every BN on running statistics; with `fuse`, zero padding folds into
    /// the conv that reads it and conv+BN(+add)(+ReLU) chains become single steps with BN folded
    /// into the conv.
    public static func inference(_ model: any Layer, input: Shape, fuse: Bool = true) throws -> Graph {
        var graph = try Graph.trace(model, input: input)
        for node in graph.nodes {
            if var bn = node.op as? BatchNormOp {
                bn.usesRunningStatistics = true
                graph.replaceOp(ofNode: node.index, with: bn)
            }
        }
        return fuse ? try FusionPass.apply(PadFoldingPass.apply(graph)) : graph
    }

    /// A training step: trace with the loss → freeze → frozen BN on running statistics → fold
    /// padding, fuse → autodiff → optimizer update nodes.
    public static func training(_ model: any Layer, input: Shape, _ configuration: TrainStep.Configuration) throws -> Graph {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(configuration.freeze)
        if let keep = configuration.trainOnly { graph.freeze(allExcept: keep) }
        FreezePass.apply(&graph, frozenBatchNorm: configuration.frozenBatchNorm)
        if configuration.fuse { graph = try FusionPass.apply(PadFoldingPass.apply(graph)) }
        graph = try Autodiff.differentiate(graph)
        try configuration.optimizer.appendUpdates(to: &graph)
        return graph
    }

    /// Forward + backward without an optimizer (gradients kept, for `graphc grad` and tests).
    public static func gradients(
        _ model: any Layer, input: Shape, freeze: [String] = [], trainOnly: [String]? = nil,
        frozenBatchNorm: FrozenBatchNorm = .runningStatistics, fuse: Bool = true
    ) throws -> Graph {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(freeze)
        if let keep = trainOnly { graph.freeze(allExcept: keep) }
        FreezePass.apply(&graph, frozenBatchNorm: frozenBatchNorm)
        if fuse { graph = try FusionPass.apply(PadFoldingPass.apply(graph)) }
        return try Autodiff.differentiate(graph)
    }
}
