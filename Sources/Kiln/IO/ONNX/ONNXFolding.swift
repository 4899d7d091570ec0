import Foundation

// Constant folding at import time: Constant, Shape and the arithmetic exporters build on them
// (Gather, Concat, Unsqueeze, Reshape, Slice, Cast, integer Add/Mul/…), and any foldable op whose
// inputs are all constants (e.g. the light model zoo's ConstantOfShape weights).

extension ONNXImporter {
    /// Folds the current node when it can be; false when it must become graph nodes.
    func fold() throws -> Bool {
        switch node.opType {
        case "Constant":
            output(0, try constantAttribute())
            return true
        case "Shape":
            let s = try shape(0).dims
            let rank = s.count
            let start = try clampAxis(int("start", 0), rank), end = try clampAxis(int("end", rank), rank)
            output(0, ONNXConstant(shape: [max(end - start, 0)], ints: s[start..<max(end, start)].map { Int64($0) }))
            return true
        case "Size":
            output(0, ONNXConstant(shape: [], ints: [Int64(try shape(0).count)]))
            return true
        default: break
        }
        let present = node.input.indices.filter { has($0) }
        guard try present.allSatisfy({ try constant($0) != nil }) else { return false }
        let inputs = try present.map { try constant($0)! }
        guard let result = try foldConstant(inputs) else { return false }
        output(0, result)
        let layout: Set = ["Identity", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten", "Cast"]
        if layout.contains(node.opType), learnable.contains(node.input[0]), result.isFloat, let name = node.output.first {
            learnable.insert(name)
        }
        return true
    }

    private func clampAxis(_ a: Int, _ rank: Int) throws -> Int { min(max(a < 0 ? a + rank : a, 0), rank) }

    private func constantAttribute() throws -> ONNXConstant {
        let decoder = ONNXTensorDecoder(file: model.file, folder: nil)
        if let t = attribute("value") { return try decoder.decode(t.t, what: node.output.first ?? nodeName) }
        if let a = attribute("value_float") { return ONNXConstant(shape: [], floats: [a.f]) }
        if let a = attribute("value_floats") { return ONNXConstant(shape: [a.floats.count], floats: a.floats) }
        if let a = attribute("value_int") { return ONNXConstant(shape: [], ints: [a.i]) }
        if let a = attribute("value_ints") { return ONNXConstant(shape: [a.ints.count], ints: a.ints) }
        throw fail("a Constant without a supported value attribute")
    }

    /// The folded value of an op on constants, or nil for ops that are not folded.
    private func foldConstant(_ inputs: [ONNXConstant]) throws -> ONNXConstant? {
        guard let x = inputs.first else { return nil }
        switch node.opType {
        case "Identity": return x
        case "Cast": return x.cast(toFloat: [1, 10, 11, 16].contains(int("to", 1)))
        case "ConstantOfShape":
            let dims = x.intValues
            let sizes = HostileSizes(file: model.file) { [self] in fail($0) }
            let count = try sizes.elementCount(dims, "ConstantOfShape")
            try sizes.withinLimit(try sizes.product(count, 4, "ConstantOfShape"), "ConstantOfShape")
            let fill =
                try attribute("value").map { try ONNXTensorDecoder(file: model.file, folder: nil).decode($0.t, what: nodeName) }
                ?? ONNXConstant(shape: [1], floats: [0])
            return fill.isFloat
                ? ONNXConstant(shape: dims, floats: [Float](repeating: fill.floats.first ?? 0, count: count))
                : ONNXConstant(shape: dims, ints: [Int64](repeating: fill.ints.first ?? 0, count: count))
        case "Unsqueeze", "Squeeze": return x.reshaped(try squeezeTarget(Shape(x.shape)))
        case "Reshape": return x.reshaped(try reshapeTarget())
        case "Flatten":
            let a = try axis(int("axis", 1), rank: x.shape.count + 1)
            let outer = x.shape[..<a].reduce(1, *)
            return x.reshaped([outer, x.count / max(outer, 1)])
        case "Gather":
            guard inputs.count == 2 else { return nil }
            return try gather(x, inputs[1])
        case "Transpose":
            let rank = x.shape.count, perm = ints("perm") ?? Array((0..<rank).reversed())
            guard perm.sorted() == Array(0..<rank), x.count <= LoadLimits.maxBytes / 4 else { return nil }
            let out = Shape(perm.map { x.shape[$0] }), strides = contiguousStrides(Shape(x.shape))
            let permuted = perm.map { strides[$0] }
            let indices = (0..<out.count).map { i -> Int in
                var rest = i, at = 0
                for k in stride(from: rank - 1, through: 0, by: -1) {
                    at += (rest % out[k]) * Int(permuted[k])
                    rest /= out[k]
                }
                return at
            }
            return x.picking(indices, shape: out.dims)
        case "Concat":
            guard let first = inputs.first else { return nil }
            let a = try axis(int("axis", 0), rank: max(first.shape.count, 1))
            if first.shape.count <= 1 {
                return inputs.allSatisfy(\.isFloat)
                    ? ONNXConstant(shape: [inputs.reduce(0) { $0 + $1.count }], floats: inputs.flatMap(\.floats))
                    : ONNXConstant(shape: [inputs.reduce(0) { $0 + $1.count }], ints: inputs.flatMap(\.ints))
            }
            _ = a
            return nil
        case "Slice":
            guard x.shape.count == 1 else { return nil }
            let (start, step, size) = try sliceGeometry(Shape(x.shape))
            return x.picking((0..<size[0]).map { start[0] + $0 * step[0] }, shape: size)
        case "Add", "Sub", "Mul", "Div", "Equal", "Max", "Min":
            guard inputs.count == 2 else { return nil }
            return try elementwise(x, inputs[1])
        case "Neg":
            return x.isFloat
                ? ONNXConstant(shape: x.shape, floats: x.floats.map { -$0 }) : ONNXConstant(shape: x.shape, ints: x.ints.map { 0 &- $0 })
        case "Range":
            guard inputs.count == 3, inputs.allSatisfy({ $0.count == 1 }) else { return nil }
            let (start, limit, delta) = (inputs[0].floats[0], inputs[1].floats[0], inputs[2].floats[0])
            let steps = ((limit - start) / delta).rounded(.up)
            guard delta != 0, steps.isFinite, steps <= Float(1 << 24) else { throw fail("Range(\(start), \(limit), \(delta))") }
            let count = max(Int(steps), 0)
            let values = (0..<count).map { start + Float($0) * delta }
            return x.isFloat ? ONNXConstant(shape: [count], floats: values) : ONNXConstant(shape: [count], ints: values.map { Int64($0) })
        case "Where":
            guard inputs.count == 3 else { return nil }
            let (c, a, b) = (inputs[0].ints, inputs[1], inputs[2])
            guard a.count == c.count, b.count == c.count else { return nil }
            return a.isFloat
                ? ONNXConstant(shape: x.shape, floats: c.indices.map { c[$0] != 0 ? a.floats[$0] : b.floats[$0] })
                : ONNXConstant(shape: x.shape, ints: c.indices.map { c[$0] != 0 ? a.ints[$0] : b.ints[$0] })
        default: return nil
        }
    }

    private func gather(_ data: ONNXConstant, _ indices: ONNXConstant) throws -> ONNXConstant {
        let a = try axis(int("axis", 0), rank: max(data.shape.count, 1))
        guard data.shape.count >= 1 else { throw fail("Gather from a scalar") }
        let n = data.shape[a]
        let idx = try indices.intValues.map { i -> Int in
            let k = i < 0 ? i + n : i
            guard (0..<n).contains(k) else { throw fail("Gather index \(i) outside [0, \(n))") }
            return k
        }
        let outer = data.shape[..<a].reduce(1, *), inner = data.shape[(a + 1)...].reduce(1, *)
        var flat: [Int] = []
        for o in 0..<outer { for k in idx { for i in 0..<inner { flat.append((o * n + k) * inner + i) } } }
        return data.picking(flat, shape: Array(data.shape[..<a]) + indices.shape + Array(data.shape[(a + 1)...]))
    }

    private func elementwise(_ a: ONNXConstant, _ b: ONNXConstant) throws -> ONNXConstant? {
        let out = try broadcastShape(Shape(a.shape), Shape(b.shape))
        guard (try? checkedCount(out.dims)).map({ $0 <= 1 << 24 }) == true else { return nil }
        let (sa, sb) = (broadcastStrides(Shape(a.shape), to: out), broadcastStrides(Shape(b.shape), to: out))
        func index(_ i: Int, _ strides: [Int64]) -> Int {
            var rest = i, result = 0
            for k in stride(from: out.rank - 1, through: 0, by: -1) {
                result += (rest % out[k]) * Int(strides[k])
                rest /= out[k]
            }
            return result
        }
        let op = node.opType
        if a.isFloat || b.isFloat {
            let (u, v) = (a.floats, b.floats)
            let values = (0..<out.count).map { i -> Float in
                let (p, q) = (u[index(i, sa)], v[index(i, sb)])
                switch op {
                case "Add": return p + q
                case "Sub": return p - q
                case "Mul": return p * q
                case "Div": return p / q
                case "Max": return max(p, q)
                case "Min": return min(p, q)
                default: return p == q ? 1 : 0
                }
            }
            return op == "Equal"
                ? ONNXConstant(shape: out.dims, ints: values.map { Int64($0) }) : ONNXConstant(shape: out.dims, floats: values)
        }
        let (u, v) = (a.ints, b.ints)
        let values = try (0..<out.count).map { i -> Int64 in
            let (p, q) = (u[index(i, sa)], v[index(i, sb)])
            switch op {
            case "Add": return p &+ q
            case "Sub": return p &- q
            case "Mul": return p &* q
            case "Div":
                let (quotient, overflow) = p.dividedReportingOverflow(by: q)
                guard q != 0, !overflow else { throw fail("integer division \(p) / \(q)") }
                return quotient
            case "Max": return max(p, q)
            case "Min": return min(p, q)
            default: return p == q ? 1 : 0
            }
        }
        return ONNXConstant(shape: out.dims, ints: values)
    }
}
