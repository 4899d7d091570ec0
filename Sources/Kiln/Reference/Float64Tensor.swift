/// A dense float64 tensor for `Float64Evaluator`. Integer inputs (labels) are held as doubles,
/// which is exact for any class index.
public final class Float64Tensor: @unchecked Sendable {
    public let shape: Shape
    public let doubles: UnsafeMutablePointer<Double>

    public init(zeros shape: Shape) {
        self.shape = shape
        doubles = .allocate(capacity: max(shape.count, 1))
        doubles.initialize(repeating: 0, count: max(shape.count, 1))
    }

    public convenience init(shape: Shape, values: [Double]) {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { doubles.update(from: $0.baseAddress!, count: values.count) }
    }

    /// Widens a float32 or int64 tensor.
    public convenience init(_ tensor: Tensor) {
        self.init(zeros: tensor.shape)
        for i in 0..<tensor.count {
            doubles[i] = tensor.dtype == .int64 ? Double(tensor.int64s[i]) : Double(tensor.floats[i])
        }
    }

    deinit { doubles.deallocate() }

    public var count: Int { shape.count }
    public var scalars: [Double] { Array(UnsafeBufferPointer(start: doubles, count: count)) }

    /// The values rounded to float32.
    public func float32() -> Tensor {
        let t = Tensor(zeros: shape)
        for i in 0..<count { t.floats[i] = Float(doubles[i]) }
        return t
    }

    /// The values as integers (labels).
    var int64s: [Int64] { (0..<count).map { Int64(doubles[$0]) } }

    /// A tensor of `shape` whose values `body` writes.
    static func computing(_ shape: Shape, _ body: (UnsafeMutablePointer<Double>) throws -> Void) rethrows -> Float64Tensor {
        let t = Float64Tensor(zeros: shape)
        try body(t.doubles)
        return t
    }

    /// Elementwise map (activations, masks, sums).
    static func map(_ shape: Shape, _ f: (Int) -> Double) -> Float64Tensor {
        computing(shape) { out in for i in 0..<shape.count { out[i] = f(i) } }
    }
}
