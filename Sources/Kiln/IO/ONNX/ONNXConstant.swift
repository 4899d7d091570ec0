import Foundation

/// A tensor known at import time: an initializer, a Constant node, or the result of folding the
/// shape arithmetic exporters emit (Shape → Gather → Concat → Reshape). Floats stay float32;
/// every integer and boolean type is held as Int64.
struct ONNXConstant {
    enum Storage {
        case float([Float])
        case int([Int64])
    }

    var shape: [Int]
    var storage: Storage

    init(shape: [Int], floats: [Float]) { (self.shape, self.storage) = (shape, .float(floats)) }
    init(shape: [Int], ints: [Int64]) { (self.shape, self.storage) = (shape, .int(ints)) }

    var count: Int { shape.reduce(1, *) }
    var isFloat: Bool { if case .float = storage { return true } else { return false } }

    var floats: [Float] {
        switch storage {
        case let .float(v): v
        case let .int(v): v.map { Float($0) }
        }
    }
    var ints: [Int64] {
        switch storage {
        case let .float(v): v.map { $0.isFinite ? Int64(max(min($0, 9.2e18), -9.2e18)) : 0 }
        case let .int(v): v
        }
    }
    var intValues: [Int] { ints.map { Int(clamping: $0) } }

    func tensor() -> Tensor { Tensor(shape: Shape(shape), values: floats) }

    /// Same values, other storage kind (ONNX Cast between float and integer types).
    func cast(toFloat: Bool) -> ONNXConstant {
        toFloat ? ONNXConstant(shape: shape, floats: floats) : ONNXConstant(shape: shape, ints: ints.map { $0 })
    }

    func reshaped(_ dims: [Int]) -> ONNXConstant {
        var copy = self
        copy.shape = dims
        return copy
    }

    /// Elements picked by flat index (Gather, Slice, Transpose on constants).
    func picking(_ indices: [Int], shape: [Int]) -> ONNXConstant {
        switch storage {
        case let .float(v): ONNXConstant(shape: shape, floats: indices.map { v[$0] })
        case let .int(v): ONNXConstant(shape: shape, ints: indices.map { v[$0] })
        }
    }
}

/// Decodes TensorProtos, checking every size against the bytes present before allocating.
struct ONNXTensorDecoder {
    let file: String
    /// The model's folder, where external-data files must live.
    let folder: URL?

    private var sizes: HostileSizes { HostileSizes(file: file) { ONNXError(file: file, detail: $0) } }

    func decode(_ t: Onnx_TensorProto, what: String) throws -> ONNXConstant {
        let dims = t.dims.map { Int(clamping: $0) }
        let count = try sizes.elementCount(dims, "tensor '\(what)'")
        let type = t.dataType
        guard let width = Self.byteWidth[type] else {
            throw ONNXError(
                file: file, detail: "tensor '\(what)' has data type \(type) (\(Self.typeName(type))), which Kiln does not import")
        }
        let bytes = try sizes.product(count, width, "tensor '\(what)'")
        try sizes.withinLimit(bytes, "tensor '\(what)'")
        let raw: Data?
        if t.dataLocation == .external {
            raw = try externalData(t, bytes: bytes, what: what)
        } else if t.hasRawData {
            raw = t.rawData
        } else {
            raw = nil
        }
        if let raw {
            guard raw.count == bytes else {
                throw ONNXError(file: file, detail: "tensor '\(what)' of shape \(dims) needs \(bytes) bytes, its data holds \(raw.count)")
            }
            return decodeRaw(raw, type: type, count: count, dims: dims)
        }
        let provided: Int
        switch type {
        case 1: provided = t.floatData.count
        case 11: provided = t.doubleData.count
        case 7: provided = t.int64Data.count
        case 12, 13: provided = t.uint64Data.count
        default: provided = t.int32Data.count
        }
        guard provided == count else {
            throw ONNXError(file: file, detail: "tensor '\(what)' of shape \(dims) needs \(count) values, holds \(provided)")
        }
        switch type {
        case 1: return ONNXConstant(shape: dims, floats: t.floatData)
        case 11: return ONNXConstant(shape: dims, floats: t.doubleData.map { Float($0) })
        case 10: return ONNXConstant(shape: dims, floats: t.int32Data.map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0))) })
        case 7: return ONNXConstant(shape: dims, ints: t.int64Data)
        case 12, 13: return ONNXConstant(shape: dims, ints: t.uint64Data.map { Int64(truncatingIfNeeded: $0) })
        default: return ONNXConstant(shape: dims, ints: t.int32Data.map { Int64($0) })
        }
    }

    private func decodeRaw(_ raw: Data, type: Int32, count: Int, dims: [Int]) -> ONNXConstant {
        raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
            func load<T>(_: T.Type) -> [T] { (0..<count).map { p.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
            switch type {
            case 1: return ONNXConstant(shape: dims, floats: load(Float.self))
            case 11: return ONNXConstant(shape: dims, floats: load(Double.self).map { Float($0) })
            case 10: return ONNXConstant(shape: dims, floats: load(UInt16.self).map { Float(Float16(bitPattern: $0)) })
            case 7: return ONNXConstant(shape: dims, ints: load(Int64.self))
            case 13: return ONNXConstant(shape: dims, ints: load(UInt64.self).map { Int64(truncatingIfNeeded: $0) })
            case 6: return ONNXConstant(shape: dims, ints: load(Int32.self).map { Int64($0) })
            case 12: return ONNXConstant(shape: dims, ints: load(UInt32.self).map { Int64($0) })
            case 5: return ONNXConstant(shape: dims, ints: load(Int16.self).map { Int64($0) })
            case 4: return ONNXConstant(shape: dims, ints: load(UInt16.self).map { Int64($0) })
            case 3: return ONNXConstant(shape: dims, ints: load(Int8.self).map { Int64($0) })
            default: return ONNXConstant(shape: dims, ints: load(UInt8.self).map { Int64($0) })  // uint8, bool
            }
        }
    }

    /// The bytes of an external-data tensor (models over 2 GB): `location` relative to the model's
    /// folder (never outside it), `offset` and `length` checked against the file's size.
    private func externalData(_ t: Onnx_TensorProto, bytes: Int, what: String) throws -> Data {
        let entries = Dictionary(t.externalData.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        guard let folder, let location = entries["location"], !location.isEmpty else {
            throw ONNXError(file: file, detail: "tensor '\(what)' is stored externally but names no location")
        }
        let base = folder.resolvingSymlinksInPath().standardizedFileURL
        let url = base.appendingPathComponent(location).resolvingSymlinksInPath().standardizedFileURL
        guard url.path.hasPrefix(base.path + "/") else {
            throw ONNXError(file: file, detail: "tensor '\(what)': external data '\(location)' lies outside the model's folder")
        }
        let offset = Int(entries["offset"] ?? "0") ?? -1
        let length = entries["length"].map { Int($0) ?? -1 } ?? bytes
        guard offset >= 0, length == bytes else {
            throw ONNXError(
                file: file, detail: "tensor '\(what)': external data offset \(offset) / length \(length) invalid (\(bytes) bytes needed)")
        }
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw ONNXError(file: file, detail: "tensor '\(what)': cannot open external data file \(url.path)")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        guard try sizes.sum(offset, bytes, "tensor '\(what)'") <= size else {
            throw ONNXError(file: file, detail: "tensor '\(what)': \(url.lastPathComponent) holds \(size) bytes, \(offset)+\(bytes) needed")
        }
        try handle.seek(toOffset: UInt64(offset))
        return try handle.read(upToCount: bytes) ?? Data()
    }

    static let byteWidth: [Int32: Int] = [1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8]
    static func typeName(_ type: Int32) -> String {
        [
            1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
            10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16",
        ][type] ?? "unknown"
    }
}
