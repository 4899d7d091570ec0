import Foundation
import Kiln

/// Mirrors `fixture_tensor` in Tests/Fixtures/generate.py: every state_dict entry derives from
/// its key through an integer hash, exactly in float32, so the fixtures need not store weights.
enum FixtureWeights {
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

    static func splitmix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Values in [-1, 1) on a 2^-23 grid.
    static func unit(_ key: String, count: Int) -> [Float] {
        let base = fnv1a(key)
        return (0..<count).map { i in
            let u = Float(splitmix(base &+ UInt64(i)) >> 40) * Float(1.0 / 16_777_216.0)
            return 2 * u - 1
        }
    }

    static func tensor(_ key: String, shape: Shape) -> Tensor {
        if key.hasSuffix("num_batches_tracked") { return Tensor(zeros: shape, dtype: .int64) }
        let v = unit(key, count: shape.count)
        let values: [Float]
        if shape.rank >= 2 {
            let scale = Float((6.0 / Double(shape.count / shape[0])).squareRoot())
            values = v.map { $0 * scale }
        } else if key.hasSuffix("running_var") {
            values = v.map { 1 + 0.5 * $0 }
        } else if key.hasSuffix("weight") {
            values = v.map { 1 + 0.25 * $0 }
        } else {
            values = v.map { 0.1 * $0 }
        }
        return Tensor(shape: shape, values: values)
    }

    static func store(for graph: Graph) -> ParameterStore {
        let store = ParameterStore()
        for value in graph.stateValues { store.set(value.name, tensor(value.name, shape: value.shape)) }
        return store
    }

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ model: String, _ file: String) -> URL {
        directory.appendingPathComponent(model).appendingPathComponent(file)
    }
}
