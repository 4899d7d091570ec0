import CKernels
import Foundation

/// A dense tensor owning 64-byte-aligned memory. A reference type: the executor hands the same
/// buffers to consecutive kernels without copies.
public final class Tensor: @unchecked Sendable {
    public let shape: Shape
    public let dtype: DType
    public let data: UnsafeMutableRawPointer
    /// Whatever owns `data` when this tensor is a view (an arena, or another tensor); nil when the
    /// tensor allocated it.
    private let owner: AnyObject?

    public init(zeros shape: Shape, dtype: DType = .float32) {
        self.shape = shape
        self.dtype = dtype
        let bytes = max(shape.count * dtype.byteSize, 1)
        guard let memory = alignedZeroedMemory(bytes) else { fatalError("cannot allocate \(bytes) bytes for a \(shape) tensor") }
        data = memory
        owner = nil
    }

    /// A zeroed tensor, or nil when the memory cannot be had (loaders turn that into an error
    /// naming the file; `init(zeros:)` traps instead).
    public init?(allocating shape: Shape, dtype: DType = .float32) {
        let bytes = max(shape.count * dtype.byteSize, 1)
        guard let memory = alignedZeroedMemory(bytes) else { return nil }
        self.shape = shape
        self.dtype = dtype
        data = memory
        owner = nil
    }

    /// A view of memory owned by `owner` (e.g. a slice of the executor's arena).
    public init(viewing data: UnsafeMutableRawPointer, shape: Shape, dtype: DType, owner: AnyObject) {
        self.shape = shape
        self.dtype = dtype
        self.data = data
        self.owner = owner
    }

    public convenience init(shape: Shape, values: [Float]) {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { floats.update(from: $0.baseAddress!, count: values.count) }
    }

    public convenience init(shape: Shape, int64s values: [Int64]) {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .int64)
        values.withUnsafeBufferPointer { int64s.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { if owner == nil { free(data) } }

    public var count: Int { shape.count }
    public var byteCount: Int { shape.count * dtype.byteSize }
    public var floats: UnsafeMutablePointer<Float> { data.assumingMemoryBound(to: Float.self) }
    public var int64s: UnsafeMutablePointer<Int64> { data.assumingMemoryBound(to: Int64.self) }

    public var scalars: [Float] { Array(UnsafeBufferPointer(start: floats, count: count)) }
    public var int64Scalars: [Int64] { Array(UnsafeBufferPointer(start: int64s, count: count)) }

    public func copy(from other: Tensor) {
        precondition(other.byteCount == byteCount, "copy between \(other.shape) and \(shape)")
        data.copyMemory(from: other.data, byteCount: byteCount)
    }

    public func clone() -> Tensor {
        let t = Tensor(zeros: shape, dtype: dtype)
        t.copy(from: self)
        return t
    }
}

/// `bytes` of zeroed memory aligned to 64 bytes, or nil when the allocator refuses (e.g. under an
/// address-space limit). Freed with `free`.
func alignedZeroedMemory(_ bytes: Int) -> UnsafeMutableRawPointer? {
    var memory: UnsafeMutableRawPointer?
    guard posix_memalign(&memory, 64, bytes) == 0, let memory else { return nil }
    kn_advise_huge_pages(memory, Int64(bytes))
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    return memory
}
