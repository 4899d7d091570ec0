import Foundation
import ZIPFoundation

extension TorchCheckpoint {
    /// Writes a state dict as `torch.save(state_dict)` lays it out: a zip holding
    /// `archive/data.pkl` (an OrderedDict of `_rebuild_tensor_v2` calls), one stored member per
    /// storage under `archive/data/`, `archive/byteorder` and `archive/version`. float32 tensors
    /// become FloatStorage, int64 LongStorage. Atomic (temporary file + rename).
    public static func write(_ tensors: [(String, Tensor)], to url: URL) throws {
        var pickle = PickleWriter()
        pickle.global("collections", "OrderedDict")
        pickle.emptyTuple()
        pickle.reduce()
        pickle.mark()
        var storages: [(String, Data)] = []
        for (index, (name, tensor)) in tensors.enumerated() {
            let key = String(index)
            var strides = [Int](repeating: 1, count: tensor.shape.rank)
            for d in stride(from: tensor.shape.rank - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * tensor.shape[d + 1] }
            pickle.string(name)
            pickle.tensor(
                storage: key, dtype: tensor.dtype == .float32 ? "Float" : "Long", count: tensor.count,
                shape: tensor.shape.dims, strides: strides)
            storages.append((key, Data(bytes: tensor.data, count: tensor.byteCount)))
        }
        pickle.setItems()
        pickle.stop()
        try writeArchive(pickle: pickle.bytes, storages: storages, to: url)
    }

    /// A torch zip around any pickle and storages (tests and fuzz seeds build hostile ones).
    public static func writeArchive(
        pickle: [UInt8], storages: [(key: String, bytes: Data)], to url: URL,
        deflate: Bool = false
    ) throws {
        do {
            let archive = try Archive(data: Data(), accessMode: .create)
            var members: [(String, Data)] = [("archive/data.pkl", Data(pickle)), ("archive/byteorder", Data("little".utf8))]
            members += storages.map { ("archive/data/\($0.key)", $0.bytes) }
            members.append(("archive/version", Data("3\n".utf8)))
            for (path, data) in members {
                try archive.addEntry(
                    with: path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: deflate ? .deflate : .none
                ) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
            try archive.data!.writeAtomically(to: url)
        } catch {
            throw CheckpointError(file: url.path, detail: "cannot write the checkpoint: \(error)")
        }
    }
}
