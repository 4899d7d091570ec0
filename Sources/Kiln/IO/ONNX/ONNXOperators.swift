import Foundation

// ONNX operators (opsets 9–21) mapped onto Kiln's ops. Shapes are static: everything an exporter
// computes from shapes is folded at import time (ONNXFolding.swift).

extension ONNXImporter {
    /// Inputs each op needs (optional ones beyond are checked where they are read).
    private static let arity: [String: Int] = [
        "Conv": 2, "BatchNormalization": 5, "Gemm": 2, "MatMul": 2, "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Max": 2, "Min": 2,
        "Equal": 2, "Gather": 2, "Where": 3, "Range": 3, "Expand": 2, "PRelu": 2, "Constant": 0,
    ]

    func convert() throws {
        var needed = Self.arity[node.opType] ?? 0
        if node.opType == "Reshape", model.opset >= 5 { needed = 2 }
        for i in 0..<needed where !has(i) { throw fail("input \(i) is missing") }
        if try fold() { return }
        switch node.opType {
        case "Conv": try conv()
        case "BatchNormalization": try batchNorm()
        case "Relu": output(0, try emit(ReLUOp(), [try value(0)]))
        case "Clip": try clip()
        case "LeakyRelu": try unary(.leakyReLU(alpha: float("alpha", 0.01)))
        case "Sigmoid": try unary(.sigmoid)
        case "HardSigmoid": try unary(.hardSigmoid(alpha: float("alpha", 0.2), beta: float("beta", 0.5)))
        case "HardSwish": try unary(.hardSwish)
        case "Tanh": try unary(.tanh)
        case "Elu": try unary(.elu(alpha: float("alpha", 1)))
        case "Selu": try unary(.selu(alpha: float("alpha", 1.673_263_2), gamma: float("gamma", 1.050_701)))
        case "Softplus": try unary(.softplus)
        case "Softsign": try unary(.softsign)
        case "Neg": try unary(.neg)
        case "Exp": try unary(.exp)
        case "Log": try unary(.log)
        case "Sqrt": try unary(.sqrt)
        case "Reciprocal": try unary(.reciprocal)
        case "Abs": try unary(.abs)
        case "PRelu": try prelu()
        case "Add", "Sub", "Mul", "Div", "Max", "Min": try binary()
        case "Sum": try sum()
        case "MaxPool", "AveragePool": try pool()
        case "GlobalAveragePool": try globalPool(average: true)
        case "GlobalMaxPool": try globalPool(average: false)
        case "Gemm": try gemm()
        case "MatMul": try matmul()
        case "Flatten": try flatten()
        case "Reshape": try reshape(to: try reshapeTarget())
        case "Squeeze", "Unsqueeze": try reshape(to: try squeezeTarget(try shape(0)))
        case "Identity", "Cast": try identity()
        case "Dropout": try dropout()
        case "Transpose": try transpose()
        case "Concat": try concat()
        case "Split": try split()
        case "Slice": try slice()
        case "Softmax", "LogSoftmax": try softmax(log: node.opType == "LogSoftmax")
        case "LRN": try lrn()
        case "Pad": try pad()
        case "ReduceMean", "ReduceSum": try reduce(mean: node.opType == "ReduceMean")
        case "Expand": try expand()
        default: throw fail("op '\(node.opType)' is not supported by Kiln's ONNX importer")
        }
    }

    private func unary(_ f: UnaryFunction) throws { output(0, try emit(UnaryOp(f), [try value(0)])) }

    private func identity() throws {
        if node.opType == "Cast", ![1, 10, 11].contains(int("to", 1)) { throw fail("cast of a computed tensor to type \(int("to", 1))") }
        output(0, try value(0))
    }

    private func dropout() throws {
        // The optional mask output is left undefined: a node reading it fails to import, naming it.
        let ratio = has(1) ? (try requireConstant(1, "ratio")).floats.first ?? 0.5 : float("ratio", 0.5)
        output(0, try emit(DropoutOp(p: ratio), [try value(0)]))
    }

    // MARK: convolution and normalisation

    /// Pads (top, left, bottom, right) from `pads` or `auto_pad` for a 2-D window (a 1-D one
    /// seen as height 1: `rank` 3).
    private func spatialPadding(input: [Int], kernel: [Int], stride: [Int], rank: Int = 4) throws -> Padding {
        switch string("auto_pad", "NOTSET") {
        case "NOTSET":
            var pads = ints("pads") ?? [0, 0, 0, 0]
            if rank == 3, pads.count == 2 { pads = [0, pads[0], 0, pads[1]] }
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) not supported") }
            return Padding(top: pads[0], left: pads[1], bottom: pads[2], right: pads[3])
        case "VALID": return .zero
        case let mode where mode.hasPrefix("SAME"):
            var total = [0, 0], begin = [0, 0]
            for k in 0..<2 {
                let outputs = (input[k] + stride[k] - 1) / stride[k]
                total[k] = max((outputs - 1) * stride[k] + kernel[k] - input[k], 0)
                begin[k] = mode == "SAME_UPPER" ? total[k] / 2 : total[k] - total[k] / 2
            }
            return Padding(top: begin[0], left: begin[1], bottom: total[0] - begin[0], right: total[1] - begin[1])
        case let mode: throw fail("auto_pad \(mode) not supported")
        }
    }

    /// Runs `body` on input 0 seen as 4-D: a 1-D signal [N, C, L] becomes [N, C, 1, L] and the
    /// result is reshaped back (attributes of 1-D windows are widened by the caller).
    private func as2D(_ body: (Graph.ValueID) throws -> Graph.ValueID) throws -> Graph.ValueID {
        let x = try value(0), s = shapeOf(x)
        switch s.rank {
        case 4: return try body(x)
        case 3:
            let y = try body(try emit(ReshapeOp([s[0], s[1], 1, s[2]]), [x], "to2d"))
            let r = shapeOf(y)
            return try emit(ReshapeOp([r[0], r[1], r[3]]), [y], "to1d")
        default: throw fail("only 1-D and 2-D inputs are supported, got \(s)")
        }
    }

    /// A 1-D window attribute widened to 2-D (height 1).
    private func widened(_ values: [Int]?, rank: Int, fill: Int) -> [Int]? {
        guard let values, rank == 3 else { return values }
        return values.count == 2 ? [0, values[0], 0, values[1]] : [fill, values.first ?? fill]
    }

    private func conv() throws {
        let rank = try shape(0).rank
        let dilations = widened(ints("dilations"), rank: rank, fill: 1) ?? [1, 1]
        guard dilations.count == 2, dilations.allSatisfy({ $0 >= 1 }) else {
            throw fail("dilations \(ints("dilations") ?? []) for a 2-D convolution")
        }
        let groups = int("group", 1)
        let head = nodeName == model.classifier && model.classes != nil
        let y = try as2D { x in
            let xs = shapeOf(x)
            var w: Graph.ValueID
            var bias: Graph.ValueID?
            if head, let classes = model.classes {
                let old = try requireConstant(1, "the classifier's weight")
                w = try newState(
                    node.input[1], shape: [classes, old.shape[1], 1, 1], initializer: .uniformFanIn(fanIn: old.shape[1]))
                bias = try newState(
                    has(2) ? node.input[2] : "\(nodeName).bias", shape: [classes], initializer: .uniformFanIn(fanIn: old.shape[1]))
            } else if let c = try constant(1), c.shape.count == 3 {
                w = try materialize(
                    node.input[1], c.reshaped([c.shape[0], c.shape[1], 1, c.shape[2]]), buffer: !learnable.contains(node.input[1]))
                bias = has(2) ? try value(2) : nil
            } else {
                w = try value(1)
                bias = has(2) ? try value(2) : nil
            }
            if dilations != [1, 1] { w = try dilate(w, dilations) }
            let ws = shapeOf(w)
            guard ws.rank == 4 else { throw fail("weight of shape \(ws) for a 2-D convolution") }
            let stride = widened(ints("strides"), rank: rank, fill: 1) ?? [1, 1]
            guard stride.count == 2, stride.allSatisfy({ $0 >= 1 }) else { throw fail("strides \(stride) for a 2-D convolution") }
            let pads = try spatialPadding(
                input: [xs[2], xs[3]], kernel: [ws[2], ws[3]], stride: stride.count == 2 ? stride : [1, 1], rank: rank)
            let op = Conv2DOp(stride: (stride[0], stride[1]), padding: pads, groups: groups)
            return try emit(op, [x, w] + (bias.map { [$0] } ?? []))
        }
        output(0, y)
    }

    /// A dilated kernel as a dense one with zeros between the taps: the weight placed by the
    /// gradient of a strided slice, so the holes stay zero in training and the parameter keeps
    /// its ONNX shape.
    private func dilate(_ w: Graph.ValueID, _ d: [Int]) throws -> Graph.ValueID {
        let s = shapeOf(w)
        guard s.rank == 4 else { throw fail("weight of shape \(s) for a 2-D convolution") }
        let taps = SliceOp(start: [0, 0, 0, 0], step: [1, 1, d[0], d[1]], size: s.dims)
        let dense: Shape = [s[0], s[1], (s[2] - 1) * d[0] + 1, (s[3] - 1) * d[1] + 1]
        return try emit(SliceBackwardOp(slice: taps, inputShape: dense), [w], "dilated_weight")
    }

    private func batchNorm() throws {
        if node.output.count > 1, node.output.dropFirst().contains(where: { !$0.isEmpty }) {
            throw fail("training-mode outputs (running mean/var) are not supported; export the model in eval mode")
        }
        let x = try value(0), s = shapeOf(x)
        let scaleName = node.input[1]
        let prefix = scaleName.hasSuffix(".weight") ? String(scaleName.dropLast(".weight".count)) : nodeName
        let inputs = [
            try value(1, initializer: .ones), try value(2), try value(3, buffer: true), try value(4, buffer: true, initializer: .ones),
            try newState("\(prefix).num_batches_tracked", shape: [], initializer: .zeros, buffer: true, dtype: .int64),
        ]
        let op = BatchNormOp(eps: float("epsilon", 1e-5), momentum: 1 - float("momentum", 0.9))
        switch s.rank {
        case 4: output(0, try emit(op, [x] + inputs))
        case 2, 3, 5...:
            let four: Shape = [s[0], s[1], s.dims.dropFirst(2).reduce(1, *), 1]
            let y = try emit(op, [try emit(ReshapeOp(four), [x], "to4d")] + inputs)
            output(0, try emit(ReshapeOp(s), [y], "back"))
        default: throw fail("batch normalisation of a rank-\(s.rank) tensor")
        }
    }

    // MARK: activations and arithmetic

    private func clip() throws {
        var lo = -Float.infinity, hi = Float.infinity
        if model.opset < 11 {
            (lo, hi) = (float("min", lo), float("max", hi))
        } else {
            if has(1) { lo = (try requireConstant(1, "min")).floats.first ?? lo }
            if has(2) { hi = (try requireConstant(2, "max")).floats.first ?? hi }
        }
        let x = try value(0)
        switch (lo, hi) {
        case (0, 6): output(0, try emit(ReLU6Op(), [x]))
        case (0, .infinity): output(0, try emit(ReLUOp(), [x]))
        default: output(0, try emit(UnaryOp(.clip(min: lo, max: hi)), [x]))
        }
    }

    /// relu(x) + slope · (x − relu(x)).
    private func prelu() throws {
        let x = try value(0), xs = shapeOf(x)
        var slope: Graph.ValueID
        // A per-channel slope [C] (older exporters) applies along dimension 1.
        if let c = try constant(1), c.shape.count == 1, xs.rank >= 3, c.count == xs[1], c.count > 1 {
            slope = try materialize(
                node.input[1], c.reshaped([c.count] + [Int](repeating: 1, count: xs.rank - 2)), buffer: !learnable.contains(node.input[1]))
        } else {
            slope = try value(1)
        }
        let positive = try emit(ReLUOp(), [x], "positive")
        let negative = try emit(BinaryOp(.sub), [x, positive], "negative")
        let scaled = try emit(BinaryOp(.mul), [negative, slope], "scaled")
        output(0, try emit(AddOp(), [positive, scaled]))
    }

    private func binary() throws {
        let op = BinaryOperator(rawValue: node.opType)!
        let (a, b) = (try entry(0), try entry(1))
        // x ∘ scalar constant: one pointwise affine map.
        if case .value(let x) = a, case .constant(let c) = b, c.count == 1, let s = c.floats.first, op != .max, op != .min {
            let f: UnaryFunction? =
                switch op {
                case .add: .affine(scale: 1, shift: s)
                case .sub: .affine(scale: 1, shift: -s)
                case .mul: .affine(scale: s, shift: 0)
                case .div: s != 0 ? .affine(scale: 1 / s, shift: 0) : nil
                default: nil
                }
            if let f, shapeOf(x).rank >= c.shape.count {
                output(0, try emit(UnaryOp(f), [x]))
                return
            }
        }
        let (x, y) = (try value(0), try value(1))
        if op == .add, shapeOf(x) == shapeOf(y) {
            output(0, try emit(AddOp(), [x, y]))
        } else {
            output(0, try emit(BinaryOp(op), [x, y]))
        }
    }

    private func sum() throws {
        var total = try value(0)
        for i in 1..<node.input.count {
            let next = try value(i)
            total = try emit(
                shapeOf(total) == shapeOf(next) ? AddOp() : BinaryOp(.add), [total, next], i == node.input.count - 1 ? nil : "add\(i)")
        }
        output(0, total)
    }

    // MARK: pooling

    private func pool() throws {
        let rank = try shape(0).rank
        if let d = ints("dilations"), d.contains(where: { $0 != 1 }) { throw fail("dilations \(d) are not supported") }
        if int("storage_order", 0) != 0 { throw fail("storage_order 1 is not supported") }
        guard let kernel = widened(ints("kernel_shape"), rank: rank, fill: 1), kernel.count == 2 else {
            throw fail("kernel_shape \(ints("kernel_shape") ?? []) is not a 2-D window")
        }
        let stride = widened(ints("strides"), rank: rank, fill: 1) ?? [1, 1]
        guard stride.count == 2, stride.allSatisfy({ $0 >= 1 }), kernel.allSatisfy({ $0 >= 1 }) else {
            throw fail("strides \(stride) / kernel \(kernel) for a 2-D window")
        }
        let average = node.opType == "AveragePool"
        let includePad = int("count_include_pad", 0) == 1
        let y = try as2D { x in
            let xs = shapeOf(x)
            let padding = try spatialPadding(input: [xs[2], xs[3]], kernel: kernel, stride: stride, rank: rank)
            if average, includePad, padding.bottom != padding.top || padding.right != padding.left || int("ceil_mode", 0) == 1 {
                throw fail("count_include_pad with asymmetric padding or ceil_mode is not supported")
            }
            var op = Pool2DOp(
                average ? .average(countIncludePad: includePad) : .max, kernel: (kernel[0], kernel[1]), stride: (stride[0], stride[1]),
                padding: (padding.top, padding.left))
            op.endPadding = (padding.bottom, padding.right)
            op.ceilMode = int("ceil_mode", 0) == 1
            return try emit(op, [x])
        }
        output(0, y)
    }

    private func globalPool(average: Bool) throws {
        let x = try value(0), s = shapeOf(x)
        guard s.rank == 4 else { throw fail("global pooling of \(s) (4-D inputs only)") }
        output(0, try emit(average ? GlobalAvgPoolOp() : Pool2DOp(.max, kernel: (s[2], s[3]), stride: (1, 1)), [x]))
    }

    // MARK: dense layers

    /// A linear layer from a constant weight [out, in] (`transposed`: [in, out] as stored).
    private func linear(_ x: Graph.ValueID, weightInput: Int, transposed: Bool, scale: Float, biasInput: Int?, beta: Float) throws
        -> Graph.ValueID
    {
        let name = node.input[weightInput]
        guard let w = try constant(weightInput), w.shape.count == 2 else {
            throw fail("the weight '\(name)' must be a 2-D constant (products of two computed tensors are not supported)")
        }
        let inFeatures = transposed ? w.shape[0] : w.shape[1], outFeatures = transposed ? w.shape[1] : w.shape[0]
        var inputs = [x]
        if nodeName == model.classifier, let classes = model.classes {
            inputs.append(try newState(name, shape: [classes, inFeatures], initializer: .uniformFanIn(fanIn: inFeatures)))
            let biasName = model.classifierParameters.last!
            inputs.append(try newState(biasName, shape: [classes], initializer: .uniformFanIn(fanIn: inFeatures)))
            return try emit(LinearOp(), inputs)
        }
        var weight = w
        if transposed {
            let values = w.floats
            weight = ONNXConstant(
                shape: [outFeatures, inFeatures], floats: (0..<w.count).map { i in values[(i % inFeatures) * outFeatures + i / inFeatures] }
            )
        }
        if scale != 1 { weight = ONNXConstant(shape: weight.shape, floats: weight.floats.map { $0 * scale }) }
        let isInitializer = learnable.contains(name)
        inputs.append(try materialize(name, weight, buffer: !isInitializer))
        if let b = biasInput, has(b) {
            guard let c = try constant(b), c.count == outFeatures || c.count == 1 else {
                throw fail("the bias '\(node.input[b])' must be a constant of \(outFeatures) values")
            }
            let values = c.count == 1 ? [Float](repeating: c.floats[0], count: outFeatures) : c.floats
            inputs.append(
                try materialize(
                    node.input[b], ONNXConstant(shape: [outFeatures], floats: values.map { $0 * beta }),
                    buffer: !learnable.contains(node.input[b])))
        }
        return try emit(LinearOp(), inputs)
    }

    private func gemm() throws {
        if int("transA", 0) != 0 { throw fail("transA=1 is not supported") }
        let x = try value(0)
        guard shapeOf(x).rank == 2 else { throw fail("input of shape \(shapeOf(x)); Gemm takes a matrix") }
        output(
            0,
            try linear(x, weightInput: 1, transposed: int("transB", 0) == 0, scale: float("alpha", 1), biasInput: 2, beta: float("beta", 1))
        )
    }

    private func matmul() throws {
        let x = try value(0), s = shapeOf(x)
        guard s.rank >= 2 else { throw fail("input of shape \(s)") }
        if s.rank == 2 {
            output(0, try linear(x, weightInput: 1, transposed: true, scale: 1, biasInput: nil, beta: 1))
            return
        }
        let rows = s.dims.dropLast().reduce(1, *)
        let flat = try emit(ReshapeOp([rows, s[s.rank - 1]]), [x], "rows")
        let y = try linear(flat, weightInput: 1, transposed: true, scale: 1, biasInput: nil, beta: 1)
        output(0, try emit(ReshapeOp(Shape(s.dims.dropLast() + [shapeOf(y)[1]])), [y], "back"))
    }

    // MARK: layout

    private func flatten() throws {
        let x = try value(0), s = shapeOf(x)
        let a = try axis(int("axis", 1), rank: s.rank + 1)
        let outer = s.dims[..<a].reduce(1, *)
        if a == 1 && s.rank >= 2 {
            output(0, try emit(FlattenOp(), [x]))
        } else {
            output(0, try emit(ReshapeOp([outer, s.count / max(outer, 1)]), [x]))
        }
    }

    func reshapeTarget() throws -> [Int] {
        let s = try shape(0)
        let spec = model.opset < 5 ? (ints("shape") ?? []) : (try requireConstant(1, "the target shape")).intValues
        return try resolveReshape(spec, from: s, allowZero: int("allowzero", 0) == 1)
    }

    func resolveReshape(_ spec: [Int], from s: Shape, allowZero: Bool) throws -> [Int] {
        var dims = spec.enumerated().map { k, d in d == 0 && !allowZero && k < s.rank ? s[k] : d }
        guard dims.filter({ $0 == -1 }).count <= 1, dims.allSatisfy({ $0 >= -1 }) else { throw fail("cannot reshape \(s) to \(spec)") }
        let known = try checkedCount(dims.filter { $0 != -1 })
        if let k = dims.firstIndex(of: -1) {
            guard known > 0, s.count % known == 0 else { throw fail("cannot reshape \(s) to \(spec)") }
            dims[k] = s.count / known
        }
        guard dims.allSatisfy({ $0 >= 0 }), try checkedCount(dims) == s.count else { throw fail("cannot reshape \(s) to \(spec)") }
        return dims
    }

    func squeezeTarget(_ s: Shape) throws -> [Int] {
        var axes = ints("axes")
        if model.opset >= 13, has(1) { axes = (try requireConstant(1, "axes")).intValues }
        if node.opType == "Squeeze" {
            let drop = try Set((axes ?? s.dims.indices.filter { s[$0] == 1 }).map { try axis($0, rank: s.rank) })
            return s.dims.indices.filter { !drop.contains($0) }.map { s[$0] }
        }
        guard let axes else { throw fail("Unsqueeze without axes") }
        let rank = s.rank + axes.count
        let inserted = try Set(axes.map { try axis($0, rank: rank) })
        guard inserted.count == axes.count else { throw fail("repeated axes \(axes)") }
        var rest = s.dims.makeIterator()
        return (0..<rank).map { inserted.contains($0) ? 1 : rest.next()! }
    }

    private func reshape(to dims: [Int]) throws {
        let x = try value(0)
        output(0, shapeOf(x).dims == dims ? x : try emit(ReshapeOp(Shape(dims)), [x]))
    }

    private func transpose() throws {
        let x = try value(0), rank = shapeOf(x).rank
        let perm = ints("perm") ?? Array((0..<rank).reversed())
        output(0, try emit(TransposeOp(perm), [x]))
    }

    private func concat() throws {
        let inputs = try node.input.indices.filter { has($0) }.map { try value($0) }
        let rank = shapeOf(inputs[0]).rank
        output(0, try emit(ConcatOp(axis: try axis(int("axis", 0), rank: rank)), inputs))
    }

    func splitSizes(_ s: Shape, axis a: Int) throws -> [Int] {
        if let sizes = ints("split") { return sizes }
        if model.opset >= 13, has(1) { return (try requireConstant(1, "split")).intValues }
        let parts = model.opset >= 18 ? int("num_outputs", node.output.count) : node.output.count
        let chunk = (s[a] + parts - 1) / max(parts, 1)
        return (0..<parts).map { min(chunk, max(s[a] - $0 * chunk, 0)) }
    }

    private func split() throws {
        let x = try value(0), s = shapeOf(x)
        let a = try axis(int("axis", 0), rank: s.rank)
        let sizes = try splitSizes(s, axis: a)
        guard sizes.reduce(0, +) == s[a], sizes.allSatisfy({ $0 > 0 }) else { throw fail("split \(sizes) of dimension \(s[a])") }
        var start = 0
        for (k, size) in sizes.enumerated() {
            var starts = [Int](repeating: 0, count: s.rank), dims = s.dims
            (starts[a], dims[a]) = (start, size)
            output(k, try emit(SliceOp(start: starts, step: [Int](repeating: 1, count: s.rank), size: dims), [x], "\(k)"))
            start += size
        }
    }

    /// Per-dimension (start, step, size) of an ONNX Slice on a tensor of shape `s`.
    func sliceGeometry(_ s: Shape) throws -> (start: [Int], step: [Int], size: [Int]) {
        let starts: [Int], ends: [Int]
        var axes: [Int]?, steps: [Int]?
        if model.opset < 10 {
            (starts, ends, axes) = (ints("starts") ?? [], ints("ends") ?? [], ints("axes"))
        } else {
            starts = (try requireConstant(1, "starts")).intValues
            ends = (try requireConstant(2, "ends")).intValues
            if has(3) { axes = (try requireConstant(3, "axes")).intValues }
            if has(4) { steps = (try requireConstant(4, "steps")).intValues }
        }
        var start = [Int](repeating: 0, count: s.rank), step = [Int](repeating: 1, count: s.rank), size = s.dims
        let sliced = axes ?? Array(0..<starts.count)
        guard starts.count == sliced.count, ends.count == sliced.count, steps == nil || steps!.count == sliced.count else {
            throw fail("starts \(starts), ends \(ends), axes \(sliced) and steps \(steps ?? []) differ in length")
        }
        for (k, a) in sliced.enumerated() {
            let d = try axis(a, rank: s.rank), n = s[d], st = steps?[k] ?? 1
            guard st != 0, k < ends.count else { throw fail("slice step 0 or missing end") }
            var b = starts[k] < 0 ? starts[k] + n : starts[k], e = ends[k] < 0 ? ends[k] + n : ends[k]
            if st > 0 {
                (b, e) = (min(max(b, 0), n), min(max(e, 0), n))
                size[d] = max(0, (e - b + st - 1) / st)
            } else {
                (b, e) = (min(max(b, 0), n - 1), min(max(e, -1), n - 1))
                size[d] = max(0, (b - e + (-st) - 1) / (-st))
            }
            (start[d], step[d]) = (b, st)
        }
        guard size.allSatisfy({ $0 > 0 }) else { throw fail("the slice of \(s) is empty") }
        return (start, step, size)
    }

    private func slice() throws {
        let x = try value(0)
        let (start, step, size) = try sliceGeometry(shapeOf(x))
        output(0, try emit(SliceOp(start: start, step: step, size: size), [x]))
    }

    private func expand() throws {
        let x = try value(0)
        let target = try broadcastShape(shapeOf(x), Shape((try requireConstant(1, "the shape")).intValues))
        output(0, shapeOf(x) == target ? x : try emit(BroadcastToOp(target), [x]))
    }

    // MARK: softmax, LRN, padding, reductions

    private func softmax(log: Bool) throws {
        let x = try value(0), s = shapeOf(x)
        let a = try axis(int("axis", model.opset < 13 ? 1 : -1), rank: s.rank)
        let op = SoftmaxOp(log: log)
        if model.opset < 13 || a == s.rank - 1 {
            // Softmax over everything from `a` on (opset < 13), or over the last axis.
            let outer = s.dims[..<a].reduce(1, *)
            let flat: Shape = model.opset < 13 ? [outer, s.count / max(outer, 1)] : [s.count / s[a], s[a]]
            let y = try emit(op, [s == flat ? x : try emit(ReshapeOp(flat), [x], "rows")])
            output(0, s == flat ? y : try emit(ReshapeOp(s), [y], "back"))
            return
        }
        var perm = Array(0..<s.rank)
        perm.swapAt(a, s.rank - 1)
        let moved = try emit(TransposeOp(perm), [x], "move")
        let ms = shapeOf(moved)
        let rows = try emit(ReshapeOp([ms.count / ms[ms.rank - 1], ms[ms.rank - 1]]), [moved], "rows")
        let y = try emit(ReshapeOp(ms), [try emit(op, [rows])], "unrows")
        output(0, try emit(TransposeOp(perm), [y], "back"))
    }

    /// x / (bias + alpha/size · Σ_window x²)^beta, composed: the window sum over channels is an
    /// average pool over a [N, 1, C, H·W] view.
    private func lrn() throws {
        let x = try value(0), s = shapeOf(x)
        guard s.rank == 4 else { throw fail("LRN of \(s) (4-D inputs only)") }
        let size = int("size", 1), alpha = float("alpha", 1e-4), beta = float("beta", 0.75), bias = float("bias", 1)
        let square = try emit(BinaryOp(.mul), [x, x], "square")
        let planes = try emit(ReshapeOp([s[0], 1, s[1], s[2] * s[3]]), [square], "planes")
        let before = (size - 1) / 2
        let padded = try emit(ZeroPad2DOp(Padding(top: before, left: 0, bottom: size - 1 - before, right: 0)), [planes], "pad")
        let mean = try emit(Pool2DOp(.average(countIncludePad: true), kernel: (size, 1), stride: (1, 1)), [padded], "window")
        let back = try emit(ReshapeOp(s), [mean], "unplanes")
        let base = try emit(UnaryOp(.affine(scale: alpha, shift: bias)), [back], "scale")
        let factor = try emit(UnaryOp(.pow(-beta)), [base], "power")
        output(0, try emit(BinaryOp(.mul), [x, factor]))
    }

    private func pad() throws {
        let x = try value(0), s = shapeOf(x)
        let mode = string("mode", "constant")
        let pads = model.opset < 11 ? (ints("pads") ?? []) : (try requireConstant(1, "pads")).intValues
        let fill = model.opset < 11 ? float("value", 0) : (has(2) ? (try requireConstant(2, "constant_value")).floats.first ?? 0 : 0)
        if model.opset >= 18, has(3) { throw fail("pads restricted to axes are not supported") }
        guard pads.count == 2 * s.rank, pads.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) for shape \(s)") }
        if mode == "reflect" || mode == "edge" {
            output(0, try borderPad(x, pads: pads, reflect: mode == "reflect"))
            return
        }
        guard mode == "constant" else { throw fail("\(mode) padding is not supported") }
        let r = s.rank
        guard r >= 3, (0..<(r - 2)).allSatisfy({ pads[$0] == 0 && pads[r + $0] == 0 }) else {
            throw fail("padding of dimensions other than the last two (pads \(pads))")
        }
        let padding =
            r == 3
            ? Padding(top: 0, left: pads[2], bottom: 0, right: pads[5])
            : Padding(top: pads[r - 2], left: pads[r - 1], bottom: pads[2 * r - 2], right: pads[2 * r - 1])
        guard r <= 4 else { throw fail("padding of a rank-\(r) tensor") }
        // A constant c pads as c + zero-pad(x − c).
        output(
            0,
            try as2D { x in
                guard fill != 0 else { return try emit(ZeroPad2DOp(padding), [x]) }
                let shifted = try emit(UnaryOp(.affine(scale: 1, shift: -fill)), [x], "shift")
                let padded = try emit(ZeroPad2DOp(padding), [shifted], "pad")
                return try emit(UnaryOp(.affine(scale: 1, shift: fill)), [padded], "unshift")
            })
    }

    /// Reflect or edge padding composed from slices: along each padded axis, the mirrored (or
    /// repeated edge) slices are concatenated around the tensor; gradients follow from the
    /// primitives'.
    private func borderPad(_ input: Graph.ValueID, pads: [Int], reflect: Bool) throws -> Graph.ValueID {
        var x = input
        let rank = shapeOf(x).rank
        for axis in 0..<rank where pads[axis] > 0 || pads[rank + axis] > 0 {
            let s = shapeOf(x), n = s[axis], (before, after) = (pads[axis], pads[rank + axis])
            guard reflect ? max(before, after) < n : n >= 1 else { throw fail("\(before)+\(after) reflect padding of a dimension of \(n)") }
            func part(_ start: Int, _ step: Int, _ size: Int, _ tag: String) throws -> Graph.ValueID {
                var starts = [Int](repeating: 0, count: rank), steps = [Int](repeating: 1, count: rank), sizes = s.dims
                (starts[axis], steps[axis], sizes[axis]) = (start, step, reflect ? size : 1)
                let slice = try emit(SliceOp(start: starts, step: steps, size: sizes), [x], "\(tag)\(axis)")
                guard !reflect, size > 1 else { return slice }
                var spread = s.dims
                spread[axis] = size
                return try emit(BroadcastToOp(Shape(spread)), [slice], "\(tag)\(axis).repeat")
            }
            var pieces: [Graph.ValueID] = []
            if before > 0 { pieces.append(try part(reflect ? before : 0, -1, before, "before")) }
            pieces.append(x)
            if after > 0 { pieces.append(try part(reflect ? n - 2 : n - 1, -1, after, "after")) }
            x = try emit(ConcatOp(axis: axis), pieces, "axis\(axis)")
        }
        return x
    }

    private func reduce(mean: Bool) throws {
        let x = try value(0), s = shapeOf(x)
        var axes = ints("axes")
        if (model.opset >= 18 || (!mean && model.opset >= 13)), has(1) { axes = (try requireConstant(1, "axes")).intValues }
        if axes == nil || axes!.isEmpty {
            if int("noop_with_empty_axes", 0) == 1 { output(0, x); return }
            axes = Array(0..<s.rank)
        }
        let normalised = try Set(axes!.map { try axis($0, rank: s.rank) })
        output(0, try emit(ReduceOp(axes: Array(normalised), keepDims: int("keepdims", 1) == 1, mean: mean), [x]))
    }
}
