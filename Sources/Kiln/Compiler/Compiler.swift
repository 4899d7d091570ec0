/// The compiler's entry points: a model and an input shape in, a graph ready to plan and run out.
/// Each entry point traces the model and runs a declared list of passes (`passes(_:)`), so what
/// happens to a graph, and in which order, is written in one place.
public enum Compiler {
    /// One graph-to-graph pass, named for diagnostics.
    struct Pass {
        let name: String
        let run: (Graph) throws -> Graph
    }

    /// What a compilation produces.
    enum Target {
        /// Eval-mode forward.
        case inference
        /// Forward, backward and (with an optimizer) the update nodes.
        case training(frozenBatchNorm: FrozenBatchNorm, optimizer: Optimizer?)
    }

    /// The pipeline: BN statistics → [pad folding → fusion] → [autodiff → optimizer updates].
    static func passes(_ target: Target, fuse: Bool) -> [Pass] {
        var list = [
            Pass(name: "batch-norm statistics") { graph in
                var graph = graph
                BatchNormStatisticsPass.apply(&graph, target)
                return graph
            }
        ]
        if fuse {
            list.append(Pass(name: "pad folding", run: PadFoldingPass.apply))
            list.append(Pass(name: "fusion", run: FusionPass.apply))
        }
        if case let .training(_, optimizer) = target {
            list.append(Pass(name: "autodiff") { try Autodiff.differentiate($0) })
            if let optimizer {
                list.append(
                    Pass(name: "optimizer updates") { graph in
                        var graph = graph
                        try optimizer.appendUpdates(to: &graph)
                        return graph
                    })
            }
        }
        return list
    }

    static func run(_ passes: [Pass], on graph: Graph) throws -> Graph {
        try passes.reduce(graph) { graph, pass in try pass.run(graph) }
    }

    /// Eval-mode forward: every BN on running statistics; with `fuse`, zero padding folds into
    /// the conv that reads it and conv+BN(+add)(+ReLU) chains become single steps with BN folded
    /// into the conv.
    public static func inference(_ model: any Layer, input: Shape, fuse: Bool = true) throws -> Graph {
        try run(passes(.inference, fuse: fuse), on: Graph.trace(model, input: input))
    }

    /// A training step: trace with the loss → freeze → frozen BN on running statistics → fold
    /// padding, fuse → autodiff → optimizer update nodes.
    public static func training(_ model: any Layer, input: Shape, _ configuration: TrainStep.Configuration) throws -> Graph {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(configuration.freeze)
        if let keep = configuration.trainOnly { graph.freeze(allExcept: keep) }
        let target = Target.training(frozenBatchNorm: configuration.frozenBatchNorm, optimizer: configuration.optimizer)
        return try run(passes(target, fuse: configuration.fuse), on: graph)
    }

    /// Forward + backward without an optimizer (gradients kept, for `graphc grad` and tests).
    public static func gradients(
        _ model: any Layer, input: Shape, freeze: [String] = [], trainOnly: [String]? = nil,
        frozenBatchNorm: FrozenBatchNorm = .runningStatistics, fuse: Bool = true
    ) throws -> Graph {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(freeze)
        if let keep = trainOnly { graph.freeze(allExcept: keep) }
        return try run(passes(.training(frozenBatchNorm: frozenBatchNorm, optimizer: nil), fuse: fuse), on: graph)
    }
}
