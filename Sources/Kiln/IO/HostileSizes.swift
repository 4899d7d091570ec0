import Foundation

/// Every size a loader reads from a file is hostile: it may be negative, overflow when multiplied,
/// or promise more bytes than the file holds. Loaders do their size arithmetic through one
/// `HostileSizes` value per file, which throws an error naming the file instead of trapping, and
/// bound what a file may expand to (decompressed members, stride-0 tensors) by `LoadLimits`.
public struct HostileSizes {
    public let file: String
    private let makeError: (String) -> Error

    /// `error` makes the loader's own error type from a detail (the file is named by it).
    public init(file: String, error: @escaping (String) -> Error) {
        self.file = file
        self.makeError = error
    }

    public static func checkpoint(_ file: String) -> HostileSizes {
        HostileSizes(file: file) { CheckpointError(file: file, detail: $0) }
    }

    public func fail(_ detail: String) -> Error { makeError(detail) }

    /// `a * b`, both non-negative.
    public func product(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard a >= 0, b >= 0 else { throw fail("\(what()): negative size (\(a) × \(b))") }
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw fail("\(what()): \(a) × \(b) overflows") }
        return p
    }

    /// `a + b`, both non-negative.
    public func sum(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard a >= 0, b >= 0 else { throw fail("\(what()): negative size (\(a) + \(b))") }
        let (s, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw fail("\(what()): \(a) + \(b) overflows") }
        return s
    }

    /// The element count of `dims` (each ≥ 0, product without overflow).
    public func elementCount(_ dims: [Int], _ what: @autoclosure () -> String) throws -> Int {
        if let d = dims.first(where: { $0 < 0 }) { throw fail("\(what()): negative dimension \(d) in shape \(dims)") }
        return try dims.reduce(1) { try product($0, $1, "\(what()): shape \(dims)") }
    }

    /// The validated shape `dims` of elements `width` bytes wide: its element and byte count.
    public func shape(_ dims: [Int], width: Int, _ what: @autoclosure () -> String) throws -> (shape: Shape, bytes: Int) {
        let count = try elementCount(dims, what())
        return (Shape(dims), try product(count, width, "\(what()): \(count) elements of \(width) bytes"))
    }

    /// Throws when `bytes` is over the per-file expansion limit.
    public func withinLimit(_ bytes: Int, _ what: @autoclosure () -> String) throws {
        guard bytes <= LoadLimits.maxBytes else {
            throw fail(
                "\(what()) would take \(bytes) bytes, over the limit of \(LoadLimits.maxBytes) (set \(LoadLimits.bytesVariable) to raise it)"
            )
        }
    }

    /// A zeroed tensor whose allocation failure is an error (not a trap).
    public func tensor(_ shape: Shape, dtype: DType, _ what: @autoclosure () -> String) throws -> Tensor {
        let bytes = try product(try elementCount(shape.dims, what()), dtype.byteSize, what())
        try withinLimit(bytes, what())
        guard let tensor = Tensor(allocating: shape, dtype: dtype) else {
            throw fail("\(what()): cannot allocate \(bytes) bytes")
        }
        return tensor
    }
}

/// How much one file may expand to when loaded. Overridable by environment variables (read once)
/// or by assignment before loading.
public enum LoadLimits {
    public static let bytesVariable = "KILN_MAX_LOAD_BYTES"
    public static let pixelsVariable = "KILN_MAX_IMAGE_PIXELS"

    /// Bytes of decompressed data or materialised tensors a single file may produce (default 2 GiB).
    nonisolated(unsafe) public static var maxBytes: Int = environment(bytesVariable) ?? (2 << 30)
    /// Pixels of one decoded image (default Pillow's decompression-bomb limit, 89,478,485).
    nonisolated(unsafe) public static var maxImagePixels: Int = environment(pixelsVariable) ?? 89_478_485

    /// A number, with an optional K/M/G suffix (binary).
    static func environment(_ name: String) -> Int? {
        guard var text = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespaces).uppercased(), !text.isEmpty else {
            return nil
        }
        var scale = 1
        if let suffix = text.last, let power = ["K": 10, "M": 20, "G": 30][String(suffix)] {
            scale = 1 << power
            text.removeLast()
        }
        guard let value = Int(text), value >= 0 else { return nil }
        return value.multipliedReportingOverflow(by: scale).overflow ? Int.max : value * scale
    }
}
