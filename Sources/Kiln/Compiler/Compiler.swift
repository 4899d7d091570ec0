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

    /// The pipeline: BN statistics → [cut at `startAt`] → [pad folding → fusion] → [autodiff →
    /// [rematerialization] → optimizer updates].
    static func passes(_ target: Target, fuse: Bool, rematerialize: Bool = true, startAt: [String]? = nil) -> [Pass] {
        var list = [
            Pass(name: "batch-norm statistics") { graph in
                var graph = graph
                BatchNormStatisticsPass.apply(&graph, target)
                return graph
            }
        ]
        if let startAt {
            list.append(
                Pass(name: "cut at \(startAt.joined(separator: ", "))") { graph in
                    try graph.extracting(outputs: graph.outputs.mapValues { graph[$0].name }, leaves: startAt)
                })
        }
        if fuse {
            list.append(Pass(name: "pad folding", run: PadFoldingPass.apply))
            list.append(Pass(name: "fusion", run: FusionPass.apply))
        }
        if case let .training(_, optimizer) = target {
            list.append(Pass(name: "autodiff") { try Autodiff.differentiate($0) })
            if fuse && rematerialize { list.append(Pass(name: "rematerialization", run: RematerializationPass.apply)) }
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
    /// `startAt` names values (a `FrozenBoundary`'s) that become the graph's inputs: the head.
    public static func inference(_ model: any Layer, input: Shape, fuse: Bool = true, startAt: [String]? = nil) throws -> Graph {
        try run(passes(.inference, fuse: fuse, startAt: startAt), on: Graph.trace(model, input: input))
    }

    /// The eval-mode graph computing only the named values (a `FrozenBoundary`'s), each an
    /// output under its own name: the feature extractor of a cached frozen prefix.
    public static func features(_ model: any Layer, input: Shape, values: [String], fuse: Bool = true) throws -> Graph {
        var graph = try Graph.trace(model, input: input)
        BatchNormStatisticsPass.apply(&graph, .inference)
        graph = try graph.extracting(outputs: Dictionary(uniqueKeysWithValues: values.map { ($0, $0) }), leaves: [])
        return try run(Array(passes(.inference, fuse: fuse).dropFirst()), on: graph)
    }

    /// The frozen prefix and boundary of the training step `configuration` describes (its
    /// freezing and frozen-BN policy applied; before fusion, so the names are the model's).
    public static func frozenBoundary(_ model: any Layer, input: Shape, _ configuration: TrainStep.Configuration) throws
        -> FrozenBoundary
    {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(configuration.freeze)
        if let keep = configuration.trainOnly { graph.freeze(allExcept: keep) }
        BatchNormStatisticsPass.apply(&graph, .training(frozenBatchNorm: configuration.frozenBatchNorm, optimizer: nil))
        return graph.frozenBoundary()
    }

    /// A training step: trace with the loss → freeze → frozen BN on running statistics → fold
    /// padding, fuse → autodiff → optimizer update nodes.
    public static func training(_ model: any Layer, input: Shape, _ configuration: TrainStep.Configuration) throws -> Graph {
        var graph = try Graph.trace(model, input: input, withLoss: true)
        graph.freeze(configuration.freeze)
        if let keep = configuration.trainOnly { graph.freeze(allExcept: keep) }
        let target = Target.training(frozenBatchNorm: configuration.frozenBatchNorm, optimizer: configuration.optimizer)
        let pipeline = passes(
            target, fuse: configuration.fuse, rematerialize: configuration.rematerialize, startAt: configuration.startAt)
        return try run(pipeline, on: graph)
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
