import Testing
@testable import Kiln

/// Every op's vjp against central finite differences of the loss. Each case is
/// x → op → (flatten) → frozen probe Linear → cross-entropy, with x and the op's parameters
/// trainable. Float32 central differences with eps = 1e-3 on a loss of order 1 carry ~1e-4 of
/// rounding noise, so the tolerance is 1e-2 of the largest gradient checked. Ops with kinks
/// (ReLU, ReLU6, max pool) get inputs on a shuffled grid whose spacing keeps every value farther
/// than eps from a kink and from its neighbours.
struct GradientCheckTests {
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let input: Shape
        var low: Float = -1, high: Float = 1
        var freezeOp = false
        let build: @Sendable (GraphBuilder, Graph.ValueID) throws -> Graph.ValueID
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "conv 3x3 pad 1 + bias", input: [2, 3, 5, 5]) { g, x in try Conv2d(3, 4, kernel: 3, padding: 1).build(x, in: g) },
        Case(name: "conv stride 2, asymmetric pad", input: [2, 3, 6, 6]) { g, x in
            try Conv2d(3, 4, kernel: (3, 3), stride: (2, 2), padding: Padding(top: 0, left: 0, bottom: 1, right: 1), bias: false).build(
                x, in: g)
        },
        Case(name: "grouped conv", input: [2, 4, 5, 5]) { g, x in try Conv2d(4, 6, kernel: 3, padding: 1, groups: 2).build(x, in: g) },
        Case(name: "depthwise conv stride 2", input: [2, 4, 6, 6]) { g, x in
            try Conv2d(4, 4, kernel: 3, stride: 2, padding: 1, groups: 4, bias: false).build(x, in: g)
        },
        Case(name: "depthwise conv 5x4 stride 2, asymmetric pad", input: [2, 3, 7, 8]) { g, x in
            try Conv2d(3, 3, kernel: (5, 4), stride: (2, 2), padding: Padding(top: 2, left: 0, bottom: 1, right: 3), groups: 3).build(
                x, in: g)
        },
        Case(name: "pointwise conv", input: [2, 5, 3, 3]) { g, x in try Conv2d(5, 3, kernel: 1).build(x, in: g) },
        Case(name: "batchnorm, batch statistics", input: [3, 3, 4, 4]) { g, x in try BatchNorm2d(3).build(x, in: g) },
        Case(name: "batchnorm, running statistics", input: [2, 3, 4, 4], freezeOp: true) { g, x in
            let inputs = [
                x,
                try g.parameter("weight", shape: [3], initializer: .uniformFanIn(fanIn: 1)),
                try g.parameter("bias", shape: [3], initializer: .uniformFanIn(fanIn: 1)),
                try g.parameter("running_mean", shape: [3], initializer: .uniformFanIn(fanIn: 4), buffer: true),
                try g.parameter("running_var", shape: [3], initializer: .constant(1.7), buffer: true),
                try g.parameter("num_batches_tracked", shape: [], initializer: .zeros, buffer: true, dtype: .int64),
            ]
            return try g.apply(BatchNormOp(eps: 1e-3, usesRunningStatistics: true), inputs)
        },
        Case(name: "relu", input: [2, 3, 4, 4]) { g, x in try ReLU().build(x, in: g) },
        Case(name: "relu6", input: [2, 3, 4, 4], low: -2, high: 8) { g, x in try ReLU6().build(x, in: g) },
        Case(name: "max pool 3 s2 p1", input: [2, 2, 6, 6]) { g, x in try MaxPool2d(3, stride: 2, padding: 1).build(x, in: g) },
        Case(name: "avg pool 3 s2 p1", input: [2, 2, 6, 6]) { g, x in try AvgPool2d(3, stride: 2, padding: 1).build(x, in: g) },
        Case(name: "avg pool excluding pad", input: [2, 2, 5, 5]) { g, x in
            try AvgPool2d(3, stride: 2, padding: 1, countIncludePad: false).build(x, in: g)
        },
        Case(name: "global average pool", input: [2, 3, 4, 5]) { g, x in try AdaptiveAvgPool2d(1).build(x, in: g) },
        Case(name: "residual add with fan-out", input: [2, 3, 4, 4]) { g, x in
            try Residual { Conv2d(3, 3, kernel: 3, padding: 1).named("conv") }.build(x, in: g)
        },
        Case(name: "linear", input: [3, 7]) { g, x in try Linear(7, 4).build(x, in: g) },
        Case(name: "zero pad asymmetric", input: [2, 2, 3, 3]) { g, x in
            try ZeroPad2d(Padding(top: 0, left: 1, bottom: 2, right: 1)).build(x, in: g)
        },
        Case(name: "dropout", input: [2, 24]) { g, x in try Dropout(0.3).build(x, in: g) },
        Case(name: "softmax", input: [2, 6]) { g, x in try Softmax().build(x, in: g) },
        Case(name: "log-softmax", input: [2, 6]) { g, x in try LogSoftmax().build(x, in: g) },
        // The composite tier's generic primitives (ONNX import).
        Case(name: "sigmoid", input: [2, 3, 2, 2]) { g, x in try g.apply(UnaryOp(.sigmoid), [x]) },
        Case(name: "tanh", input: [2, 6]) { g, x in try g.apply(UnaryOp(.tanh), [x]) },
        Case(name: "silu", input: [2, 6]) { g, x in try g.apply(UnaryOp(.silu), [x]) },
        Case(name: "hardswish", input: [2, 3, 2, 2], low: -4, high: 4) { g, x in try g.apply(UnaryOp(.hardSwish), [x]) },
        Case(name: "hardsigmoid", input: [2, 6], low: -4, high: 4) { g, x in
            try g.apply(UnaryOp(.hardSigmoid(alpha: 0.2, beta: 0.5)), [x])
        },
        Case(name: "leaky relu", input: [2, 6]) { g, x in try g.apply(UnaryOp(.leakyReLU(alpha: 0.1)), [x]) },
        Case(name: "elu", input: [2, 6]) { g, x in try g.apply(UnaryOp(.elu(alpha: 1.2)), [x]) },
        Case(name: "selu", input: [2, 6]) { g, x in try g.apply(UnaryOp(.selu(alpha: 1.67, gamma: 1.05)), [x]) },
        Case(name: "softplus", input: [2, 6]) { g, x in try g.apply(UnaryOp(.softplus), [x]) },
        Case(name: "softsign", input: [2, 6]) { g, x in try g.apply(UnaryOp(.softsign), [x]) },
        Case(name: "clip", input: [2, 6]) { g, x in try g.apply(UnaryOp(.clip(min: -0.5, max: 0.5)), [x]) },
        Case(name: "abs, neg, exp", input: [2, 6]) { g, x in
            try g.apply(UnaryOp(.exp), [try g.apply(UnaryOp(.neg), [try g.apply(UnaryOp(.abs), [x])])])
        },
        Case(name: "log, sqrt, reciprocal, pow", input: [2, 6], low: 0.5, high: 2) { g, x in
            let a = try g.apply(UnaryOp(.log), [try g.apply(UnaryOp(.sqrt), [x])])
            return try g.apply(
                UnaryOp(.pow(1.5)), [try g.apply(UnaryOp(.reciprocal), [try g.apply(UnaryOp(.affine(scale: 1, shift: 2)), [a])])])
        },
        Case(name: "broadcast add, sub, mul", input: [2, 3, 2, 2]) { g, x in
            let b = try g.parameter("b", shape: [3, 1, 1], initializer: .uniformFanIn(fanIn: 1))
            let c = try g.parameter("c", shape: [2], initializer: .uniformFanIn(fanIn: 1))
            let sum = try g.apply(BinaryOp(.add), [x, b])
            return try g.apply(BinaryOp(.mul), [try g.apply(BinaryOp(.sub), [c, sum]), b])
        },
        Case(name: "broadcast div", input: [2, 3, 4]) { g, x in
            let b = try g.parameter("b", shape: [1, 3, 1], initializer: .constant(1.5))
            return try g.apply(
                BinaryOp(.div), [x, try g.apply(BinaryOp(.div), [b, try g.apply(UnaryOp(.affine(scale: 0.2, shift: 1)), [x])])])
        },
        Case(name: "reduce mean and sum", input: [2, 3, 4, 2]) { g, x in
            let mean = try g.apply(ReduceOp(axes: [2, 3], keepDims: false, mean: true), [x])
            return try g.apply(BinaryOp(.mul), [mean, try g.apply(ReduceOp(axes: [1], keepDims: true, mean: false), [mean])])
        },
        Case(name: "transpose", input: [2, 3, 4, 2]) { g, x in try g.apply(TransposeOp([0, 2, 3, 1]), [x]) },
        Case(name: "slice, negative step", input: [2, 4, 5]) { g, x in
            let a = try g.apply(SliceOp(start: [0, 1, 4], step: [1, 2, -2], size: [2, 2, 3]), [x])
            return try g.apply(BinaryOp(.mul), [a, a])
        },
        Case(name: "concat with fan-out", input: [2, 3, 2]) { g, x in
            try g.apply(ConcatOp(axis: 1), [x, try g.apply(UnaryOp(.sigmoid), [x]), x])
        },
        Case(name: "expand", input: [2, 1, 3]) { g, x in try g.apply(BroadcastToOp([2, 4, 3]), [x]) },
    ]

    /// x → op → (flatten) → frozen probe → cross-entropy, differentiated; parameters from seed 5
    /// with x on the kink-avoiding grid.
    func setUp(_ c: Case) throws -> (forward: Graph, graph: Graph, store: ParameterStore, feeds: [String: Tensor]) {
        let g = GraphBuilder()
        let x = try g.parameter("x", shape: c.input, initializer: .zeros)
        var h = try g.scoped("op") { try c.build(g, x) }
        if g.graph[h].shape.rank != 2 { h = try g.scoped("flatten") { try g.apply(FlattenOp(), [h]) } }
        let features = g.graph[h].shape[1]
        let logits = try g.scoped("probe") { try Linear(features, 5).build(h, in: g) }
        let labels = try g.input("labels", shape: [c.input[0]], dtype: .int64)
        g.markOutput("loss", try g.scoped("loss") { try g.apply(CrossEntropyOp(), [logits, labels]) })
        var forward = g.graph
        forward.freeze("probe")
        if c.freezeOp { forward.freeze("op") }
        let graph = try Autodiff.differentiate(forward)
        let store = ParameterStore(graph: graph, seed: 5)
        fillGrid(store["x"]!, low: c.low, high: c.high, seed: 11)
        let feeds = ["labels": Tensor(shape: [c.input[0]], int64s: (0..<c.input[0]).map { Int64(($0 * 3 + 1) % 5) })]
        return (forward, graph, store, feeds)
    }

    @Test(arguments: cases)
    func vjpMatchesFiniteDifferences(_ c: Case) throws {
        let (forward, graph, store, feeds) = try setUp(c)
        let keep = Set(graph.gradients.values.map { graph[$0].name })
        let analytic = try Executor(graph: graph, parameters: store, mode: .training, keep: keep)
        try analytic.run(feeds)
        #expect(!graph.gradients.isEmpty)

        func loss() throws -> Double {
            Double(try Executor(graph: forward, parameters: store, mode: .training).run(feeds)["loss"]!.scalars[0])
        }
        let eps: Float = 1e-3
        for (name, gradID) in graph.gradients.sorted(by: { $0.key < $1.key }) {
            let grad = try analytic.tensor(named: graph[gradID].name).scalars.map(Double.init)
            let param = store[name]!
            let error = try worstCentralDifferenceError(
                count: param.count, gradient: grad, h: Double(eps),
                set: { param.floats[$0] = Float($1) }, get: { Double(param.floats[$0]) }, loss: loss)
            #expect(error < 1e-2, "\(c.name): d loss / d \(name) off by \(error) of the largest gradient")
        }
    }

    /// The same graphs in float64 (`Float64Evaluator`): each op's float64 vjp against central
    /// differences with h = 1e-6, whose noise is ~1e-9, so the tolerance tightens to 1e-6; and the
    /// float32 kernels' gradients against the float64 definitions within 1e-5.
    @Test(arguments: cases)
    func float64DefinitionsMatchFiniteDifferencesAndTheKernels(_ c: Case) throws {
        let (forward, graph, store, feeds) = try setUp(c)
        let keep = Set(graph.gradients.values.map { graph[$0].name })
        let kernels = try Executor(graph: graph, parameters: store, mode: .training, keep: keep)
        try kernels.run(feeds)
        let feeds64 = feeds.mapValues { Float64Tensor($0) }
        var state = [String: Float64Tensor]()
        for value in graph.stateValues { state[value.name] = Float64Tensor(store[value.name]!) }
        let reference = try Float64Evaluator(graph: graph).run(feeds64, state: state, mode: .training, keep: keep)
        let lossOnly = try Float64Evaluator(graph: forward)
        func loss() throws -> Double { try lossOnly.run(feeds64, state: state, mode: .training)["loss"]!.scalars[0] }

        for (name, gradID) in graph.gradients.sorted(by: { $0.key < $1.key }) {
            let grad = reference[graph[gradID].name]!.scalars
            #expect(
                relativeError(try kernels.tensor(named: graph[gradID].name).scalars, grad) < 1e-5, "\(c.name): float32 d loss / d \(name)")
            let param = state[name]!
            let error = try worstCentralDifferenceError(
                count: param.count, gradient: grad, h: 1e-6,
                set: { param.doubles[$0] = $1 }, get: { param.doubles[$0] }, loss: loss)
            #expect(error < 1e-6, "\(c.name): float64 d loss / d \(name) off by \(error) of the largest gradient")
        }
    }

    /// Largest |central difference − analytic gradient| over about a dozen elements, relative to
    /// the largest analytic gradient among them; each element is restored after its two probes.
    func worstCentralDifferenceError(
        count: Int, gradient: [Double], h: Double, set: (Int, Double) -> Void,
        get: (Int) -> Double, loss: () throws -> Double
    ) throws -> Double {
        var worst = 0.0, scale = 1e-6
        for i in stride(from: 0, to: count, by: max(1, count / 12)) {
            let original = get(i)
            set(i, original + h)
            let plus = try loss()
            set(i, original - h)
            let minus = try loss()
            set(i, original)
            worst = max(worst, abs((plus - minus) / (2 * h) - gradient[i]))
            scale = max(scale, abs(gradient[i]))
        }
        return worst / scale
    }

    /// Distinct values on an evenly spaced grid in [low, high), shuffled; none within half a step of 0 or 6.
    func fillGrid(_ t: Tensor, low: Float, high: Float, seed: UInt64) {
        let n = t.count
        var order = Array(0..<n)
        var state = seed
        for i in stride(from: n - 1, to: 0, by: -1) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            order.swapAt(i, Int(state >> 33) % (i + 1))
        }
        let step = (high - low) / Float(n)
        for i in 0..<n { t.floats[i] = low + (Float(order[i]) + 0.5) * step }
    }
}
