import Foundation
import ZIPFoundation

/// PyTorch checkpoints as `torch.save` writes them (zip: `<name>/data.pkl`, `<name>/data/<key>`,
/// `<name>/byteorder`, `<name>/version`). The pickle is parsed by `Pickle` (never executed);
/// tensors are rebuilt from their storages with offsets and strides, and converted to float32
/// (from float16, bfloat16, float64) or int64 (from int32). Accepts a bare state_dict or a dict
/// holding one under `state_dict` or `model`.
public enum TorchCheckpoint {
    /// data.pkl holds names and shapes only (≈100 KB for ResNet-18); more is not a state dict.
    public static let maxPickleBytes = 256 << 20

    public static func read(_ url: URL) throws -> [(String, Tensor)] {
        let file = url.path
        var zip: ZipMembers
        do {
            zip = try ZipMembers(url)
        } catch {
            if let head = try? FileHandle(forReadingFrom: url).readData(ofLength: 2), head == Data([0x80, 0x02]) {
                throw CheckpointError(
                    file: file, detail: "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current PyTorch")
            }
            throw CheckpointError(file: file, detail: "not a readable zip archive (truncated or not a PyTorch checkpoint)")
        }
        guard let pickleEntry = zip.first(where: { $0.path.hasSuffix("data.pkl") }) else {
            throw CheckpointError(file: file, detail: "no data.pkl in the archive (not a PyTorch checkpoint)")
        }
        let prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        if let order = zip[prefix + "byteorder"], try zip.extract(order, limit: 16).array != Array("little".utf8) {
            throw CheckpointError(file: file, detail: "big-endian checkpoints are not supported")
        }
        let document = try Pickle.load(try zip.extract(pickleEntry, limit: maxPickleBytes).array, file: file)
        var storages: [String: LoadedBytes] = [:]
        var materialized = 0
        return try stateDict(document, file: file).map { key, ref in
            let storage = ref.storage
            guard let dtype = ElementType(torchStorage: storage.dtype) else {
                throw CheckpointError(file: file, detail: "'\(key)': unsupported storage type \(storage.dtype)")
            }
            let bytes: LoadedBytes
            if let cached = storages[storage.key] {
                bytes = cached
            } else {
                guard let entry = zip[prefix + "data/" + storage.key] else {
                    throw CheckpointError(
                        file: file, detail: "'\(key)': storage '\(Pickle.printable(storage.key))' is missing from the archive")
                }
                bytes = try zip.extract(
                    entry, expected: try zip.sizes.product(storage.count, dtype.width, "'\(key)': storage of \(storage.count) elements"))
                storages[storage.key] = bytes
            }
            // The file's tensors together stay within the load limit, checked before this one is allocated.
            let width = dtype.isInteger ? DType.int64.byteSize : DType.float32.byteSize
            let needed = try zip.sizes.product(try zip.sizes.elementCount(ref.shape, "'\(key)'"), width, "'\(key)'")
            materialized = try zip.sizes.sum(materialized, needed, "the tensors")
            try zip.sizes.withinLimit(materialized, "'\(key)': the tensors loaded so far")
            return (key, try materialize(ref, dtype: dtype, bytes, key: key, sizes: zip.sizes))
        }
    }

    /// The (key, tensor) pairs of the state dict, in file order. A bare state dict, or one held
    /// under `state_dict` / `model` (training checkpoints), unwrapped without recursion: a dict
    /// that holds itself is an error, not a stack overflow.
    static func stateDict(_ document: Pickle.Document, file: String) throws -> [(String, Pickle.TensorRef)] {
        var dict = document.root
        var visited: Set<Pickle.Value> = []
        while let inner = ["state_dict", "model"].lazy.compactMap({ document.lookup(dict, $0) }).first(where: {
            document.entries($0) != nil
        }) {
            guard visited.insert(dict).inserted else {
                throw CheckpointError(file: file, detail: "the checkpoint's state dict contains itself")
            }
            dict = inner
        }
        guard let entries = document.entries(dict) else { throw CheckpointError(file: file, detail: "the checkpoint is not a dict") }
        return try entries.compactMap { key, value in
            guard case let .string(name) = key else { throw CheckpointError(file: file, detail: "non-string key \(key) in the state dict") }
            guard case let .tensor(ref) = value else { return nil }  // e.g. an epoch counter beside the weights
            return (name, ref)
        }
    }

    /// The tensor a `_rebuild_tensor_v2` call describes, read from its storage's bytes. Sizes,
    /// strides and offset are checked (no overflow, nothing negative, every element inside the
    /// storage) before the tensor is allocated; an expanded view (stride 0) may not materialise
    /// past `LoadLimits.maxBytes`.
    static func materialize(_ ref: Pickle.TensorRef, dtype: ElementType, _ bytes: LoadedBytes, key: String, sizes: HostileSizes) throws
        -> Tensor
    {
        let width = dtype.width, storageCount = ref.storage.count
        let what = "'\(key)'"
        guard bytes.count / width >= storageCount else {
            throw sizes.fail("\(what): storage holds \(bytes.count) bytes, expected \(storageCount) elements of \(width) bytes")
        }
        guard ref.shape.count == ref.strides.count else {
            throw sizes.fail("\(what): size \(ref.shape) and stride \(ref.strides) disagree")
        }
        if let s = ref.strides.first(where: { $0 < 0 }) { throw sizes.fail("\(what): negative stride \(s) in \(ref.strides)") }
        guard ref.offset >= 0 else { throw sizes.fail("\(what): negative storage offset \(ref.offset)") }
        let count = try sizes.elementCount(ref.shape, what)
        let shape = Shape(ref.shape)
        let tensor = try sizes.tensor(shape, dtype: dtype.isInteger ? .int64 : .float32, what)
        guard count > 0 else { return tensor }
        // The last element's index: offset + Σ (size − 1) · stride, each step checked.
        var last = ref.offset
        for (size, stride) in zip(ref.shape, ref.strides) {
            last = try sizes.sum(
                last, try sizes.product(size - 1, stride, "\(what): stride \(stride)"),
                "\(what): shape \(shape) with strides \(ref.strides)")
        }
        guard last < storageCount else {
            throw sizes.fail(
                "\(what): shape \(shape) with strides \(ref.strides) at offset \(ref.offset) runs past its storage of \(storageCount) elements"
            )
        }
        let raw = bytes.buffer
        let contiguous = zip(ref.strides, ref.shape.indices).allSatisfy { stride, d in
            stride == ref.shape[(d + 1)...].reduce(1, *) || ref.shape[d] == 1
        }
        if contiguous, dtype == .float32 || dtype == .int64 {
            tensor.data.copyMemory(from: raw.baseAddress! + ref.offset * width, byteCount: tensor.byteCount)
            return tensor
        }
        var index = [Int](repeating: 0, count: shape.rank)
        for i in 0..<count {
            let element = ref.offset + zip(index, ref.strides).reduce(0) { $0 + $1.0 * $1.1 }
            dtype.load(from: raw, byteOffset: element * width, into: tensor, at: i)
            var d = shape.rank - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return tensor
    }
}

/// Stored element types Kiln converts on load: floats become float32, integers int64.
enum ElementType {
    case float32, float64, float16, bfloat16, int64, int32

    init?(torchStorage name: String) {
        switch name {
        case "Float": self = .float32
        case "Double": self = .float64
        case "Half": self = .float16
        case "BFloat16": self = .bfloat16
        case "Long": self = .int64
        case "Int": self = .int32
        default: return nil
        }
    }

    init?(safetensors name: String) {
        switch name {
        case "F32": self = .float32
        case "F64": self = .float64
        case "F16": self = .float16
        case "BF16": self = .bfloat16
        case "I64": self = .int64
        case "I32": self = .int32
        default: return nil
        }
    }

    var width: Int {
        switch self {
        case .float16, .bfloat16: 2
        case .float32, .int32: 4
        case .float64, .int64: 8
        }
    }

    var isInteger: Bool { self == .int64 || self == .int32 }

    /// Element i of `tensor` from the little-endian value at `byteOffset`.
    func load(from raw: UnsafeRawBufferPointer, byteOffset at: Int, into tensor: Tensor, at i: Int) {
        switch self {
        case .float32: tensor.floats[i] = raw.loadUnaligned(fromByteOffset: at, as: Float.self)
        case .float64: tensor.floats[i] = Float(raw.loadUnaligned(fromByteOffset: at, as: Double.self))
        case .float16: tensor.floats[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
        case .bfloat16: tensor.floats[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)) << 16)
        case .int64: tensor.int64s[i] = raw.loadUnaligned(fromByteOffset: at, as: Int64.self)
        case .int32: tensor.int64s[i] = Int64(raw.loadUnaligned(fromByteOffset: at, as: Int32.self))
        }
    }
}
