import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header
/// (`{"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {…}}`), then the raw data.
/// Kiln's own checkpoints use it (weights, BN buffers, optimizer state, metadata); writes are
/// atomic (temporary file + rename).
public enum Safetensors {
    public static func read(_ url: URL) throws -> (tensors: [(String, Tensor)], metadata: [String: String]) {
        let file = url.path
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw CheckpointError(file: file, detail: "cannot read: \(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw CheckpointError(file: file, detail: "shorter than a safetensors header") }
        let headerLength = data.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let sizes = HostileSizes.checkpoint(file)
        guard headerLength <= UInt64(data.count - 8) else {
            throw CheckpointError(
                file: file, detail: "header claims \(headerLength) bytes but the file has \(data.count - 8) after the length")
        }
        let headerEnd = 8 + Int(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: data[8..<headerEnd]) as? [String: Any] else {
            throw CheckpointError(file: file, detail: "header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [(String, Int, Tensor)] = []
        var materialized = 0
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else {
                throw CheckpointError(file: file, detail: "'\(name)': malformed header entry")
            }
            guard let type = ElementType(safetensors: dtype) else {
                throw CheckpointError(file: file, detail: "'\(name)': unsupported dtype \(dtype)")
            }
            let what = "'\(name)'"
            let (shp, bytes) = try sizes.shape(shape, width: type.width, what)
            guard offsets[0] >= 0, offsets[1] >= offsets[0],
                try sizes.sum(headerEnd, offsets[1], "\(what): data_offsets \(offsets)") <= data.count
            else {
                throw CheckpointError(
                    file: file, detail: "\(what): data_offsets \(offsets) lie outside the file's \(data.count - headerEnd) data bytes")
            }
            guard offsets[1] - offsets[0] == bytes else {
                throw CheckpointError(
                    file: file,
                    detail:
                        "\(what): data_offsets \(offsets) hold \(offsets[1] - offsets[0]) bytes, shape \(shp) of \(dtype) needs \(bytes)")
            }
            // Entries may not overlap (the format says so); a file that reuses one region for many
            // tensors still cannot expand past the load limit.
            materialized = try sizes.sum(materialized, bytes, "the tensors")
            try sizes.withinLimit(materialized, "\(what): the tensors loaded so far")
            let tensor = try sizes.tensor(shp, dtype: type.isInteger ? .int64 : .float32, what)
            data.withUnsafeBytes { raw in
                let base = headerEnd + offsets[0]
                if type == .float32 || type == .int64 {
                    tensor.data.copyMemory(from: raw.baseAddress! + base, byteCount: tensor.byteCount)
                    return
                }
                for i in 0..<shp.count { type.load(from: raw, byteOffset: base + i * type.width, into: tensor, at: i) }
            }
            entries.append((name, offsets[0], tensor))
        }
        return (entries.sorted { $0.1 < $1.1 }.map { ($0.0, $0.2) }, metadata)
    }

    /// Encodes tensors in the given order (float32 as F32, int64 as I64).
    public static func encode(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, t) in tensors {
            header[name] = [
                "dtype": t.dtype == .float32 ? "F32" : "I64", "shape": t.shape.dims, "data_offsets": [offset, offset + t.byteCount],
            ]
            offset += t.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))  // pad to 8 bytes
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for (_, t) in tensors { data.append(Data(bytes: t.data, count: t.byteCount)) }
        return data
    }

    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        do {
            try encode(tensors, metadata: metadata).writeAtomically(to: url)
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(file: url.path, detail: "cannot write: \(error.localizedDescription)")
        }
    }
}
