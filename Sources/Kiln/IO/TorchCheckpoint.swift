import Foundation
import ZIPFoundation

/// PyTorch checkpoints as `torch.save` writes them (zip: `<name>/data.pkl`, `<name>/data/<key>`,
/// `<name>/byteorder`, `<name>/version`). The pickle is parsed by `Pickle` (never executed);
/// tensors are rebuilt from their storages with offsets and strides, and converted to float32
/// (from float16, bfloat16, float64) or int64 (from int32). Accepts a bare state_dict or a dict
/// holding one under `state_dict` or `model`.
public enum TorchCheckpoint {
    /// Where torch hub caches torchvision's ImageNet ResNet-18.
    public static var hubResNet18: URL {
        let env = ProcessInfo.processInfo.environment
        let torchHome = env["TORCH_HOME"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")).appendingPathComponent("torch")
        return torchHome.appendingPathComponent("hub/checkpoints/resnet18-f37072fd.pth")
    }

    public static func read(_ url: URL) throws -> [(String, Tensor)] {
        let file = url.path
        let archive: Archive
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            if let head = try? FileHandle(forReadingFrom: url).readData(ofLength: 2), head == Data([0x80, 0x02]) {
                throw CheckpointError(file: file, detail: "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current PyTorch")
            }
            throw CheckpointError(file: file, detail: "not a readable zip archive (truncated or not a PyTorch checkpoint): \(error)")
        }
        guard let pickleEntry = archive.first(where: { $0.path.hasSuffix("data.pkl") }) else {
            throw CheckpointError(file: file, detail: "no data.pkl in the archive")
        }
        let prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        if let order = archive[prefix + "byteorder"], try extract(archive, order, file) != Array("little".utf8) {
            throw CheckpointError(file: file, detail: "big-endian checkpoints are not supported")
        }
        let root = try Pickle.load(try extract(archive, pickleEntry, file), file: file)
        var storages: [String: [UInt8]] = [:]
        func storage(_ key: String) throws -> [UInt8] {
            if let bytes = storages[key] { return bytes }
            guard let entry = archive[prefix + "data/" + key] else {
                throw CheckpointError(file: file, detail: "storage '\(key)' is missing from the archive")
            }
            let bytes = try extract(archive, entry, file)
            storages[key] = bytes
            return bytes
        }
        return try stateDict(root, file: file).map { key, ref in (key, try materialize(ref, storage(ref.storage.key), key: key, file: file)) }
    }

    static func extract(_ archive: Archive, _ entry: Entry, _ file: String) throws -> [UInt8] {
        var data = Data()
        do {
            _ = try archive.extract(entry, skipCRC32: true) { data.append($0) }
        } catch {
            throw CheckpointError(file: file, detail: "cannot read '\(entry.path)' from the archive (truncated?): \(error)")
        }
        return [UInt8](data)
    }

    /// The (key, tensor) pairs of the state dict, in file order.
    static func stateDict(_ root: Pickle.Value, file: String) throws -> [(String, Pickle.TensorRef)] {
        guard case let .dict(dict) = root else { throw CheckpointError(file: file, detail: "the checkpoint is not a dict") }
        for wrapper in ["state_dict", "model"] {
            if let inner = dict[wrapper], case .dict = inner { return try stateDict(inner, file: file) }
        }
        return try dict.items.compactMap { key, value in
            guard case let .string(name) = key else { throw CheckpointError(file: file, detail: "non-string key \(key)") }
            guard case let .tensor(ref) = value else { return nil }  // e.g. an epoch counter beside the weights
            return (name, ref)
        }
    }

    static func materialize(_ ref: Pickle.TensorRef, _ bytes: [UInt8], key: String, file: String) throws -> Tensor {
        guard let dtype = ElementType(torchStorage: ref.storage.dtype) else {
            throw CheckpointError(file: file, detail: "'\(key)': unsupported storage type \(ref.storage.dtype)")
        }
        let width = dtype.width
        guard bytes.count >= ref.storage.count * width else {
            throw CheckpointError(file: file, detail: "'\(key)': storage holds \(bytes.count) bytes, expected \(ref.storage.count * width)")
        }
        guard ref.shape.count == ref.strides.count, ref.shape.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError(file: file, detail: "'\(key)': size \(ref.shape) and stride \(ref.strides) disagree")
        }
        let shape = Shape(ref.shape)
        let last = zip(ref.shape, ref.strides).reduce(ref.offset) { $0 + ($1.0 > 0 ? ($1.0 - 1) * $1.1 : 0) }
        guard shape.count == 0 || (ref.offset >= 0 && last < ref.storage.count) else {
            throw CheckpointError(file: file, detail: "'\(key)': shape \(shape) with strides \(ref.strides) runs past its storage of \(ref.storage.count) elements")
        }
        let tensor = Tensor(zeros: shape, dtype: dtype.isInteger ? .int64 : .float32)
        let contiguous = zip(ref.strides, ref.shape.indices).allSatisfy { stride, d in stride == ref.shape[(d + 1)...].reduce(1, *) || ref.shape[d] == 1 }
        if contiguous, dtype == .float32 || dtype == .int64 {
            bytes.withUnsafeBytes { raw in tensor.data.copyMemory(from: raw.baseAddress! + ref.offset * width, byteCount: tensor.byteCount) }
            return tensor
        }
        bytes.withUnsafeBytes { raw in
            var index = [Int](repeating: 0, count: shape.rank)
            for i in 0..<shape.count {
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
