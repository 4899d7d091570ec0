import Foundation

/// TensorFlow.js "layers" models (model.json + weight shards) mapped to Kiln's layout: conv kernels
/// HWIO → OIHW, depthwise kernels [kh, kw, C, 1] → [C, 1, kh, kw], dense kernels [in, out] →
/// [out, in], BatchNormalization gamma/beta/moving_mean/moving_variance → weight/bias/
/// running_mean/running_var (plus num_batches_tracked = 0). Keys become `<layer>.<param>`.
public enum TFJS {
    public static func read(_ modelJSON: URL) throws -> [(String, Tensor)] {
        let file = modelJSON.path
        let sizes = HostileSizes.checkpoint(file)
        guard let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: modelJSON)) as? [String: Any],
            let manifest = json["weightsManifest"] as? [[String: Any]]
        else {
            throw CheckpointError(file: file, detail: "not a TF.js model.json (no weightsManifest)")
        }
        let folder = modelJSON.deletingLastPathComponent()
        var result: [(String, Tensor)] = []
        var batchNorms: [String] = []
        var loaded = 0
        for group in manifest {
            guard let paths = group["paths"] as? [String], let weights = group["weights"] as? [[String: Any]] else {
                throw CheckpointError(file: file, detail: "malformed weightsManifest group")
            }
            var data = Data()
            for path in paths {
                let shard = try shardURL(path, in: folder, manifest: file)
                do { data.append(try Data(contentsOf: shard)) } catch {
                    throw CheckpointError(file: shard.path, detail: "cannot read weight shard: \(error.localizedDescription)")
                }
                loaded = try sizes.sum(loaded, data.count, "the weight shards")
                try sizes.withinLimit(loaded, "the weight shards")
            }
            let shards = folder.appendingPathComponent(paths.last ?? "").path
            var offset = 0
            for weight in weights {
                guard let name = weight["name"] as? String, let shape = weight["shape"] as? [Int] else {
                    throw CheckpointError(file: file, detail: "malformed weight entry \(weight)")
                }
                guard (weight["dtype"] as? String ?? "float32") == "float32", weight["quantization"] == nil else {
                    throw CheckpointError(file: file, detail: "'\(name)': only unquantized float32 weights are supported")
                }
                let (_, bytes) = try sizes.shape(shape, width: 4, "'\(name)'")
                let end = try sizes.sum(offset, bytes, "'\(name)': offset \(offset)")
                guard end <= data.count else {
                    throw CheckpointError(
                        file: shards, detail: "truncated: '\(name)' needs bytes \(offset)…\(end) but the shards hold \(data.count)")
                }
                let count = bytes / 4
                let values = data.withUnsafeBytes { raw in
                    (0..<count).map { raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: Float.self) }
                }
                offset = end
                let (key, tensor) = try convert(name: name, shape: shape, values: values, file: file)
                if key.hasSuffix(".running_var") { batchNorms.append(String(key.dropLast(".running_var".count))) }
                result.append((key, tensor))
            }
        }
        for layer in batchNorms { result.append(("\(layer).num_batches_tracked", Tensor(zeros: [], dtype: .int64))) }
        return result
    }

    /// A shard named by the manifest, which must lie inside the manifest's folder: a relative
    /// path without `..` that, symbolic links resolved, still ends up there.
    static func shardURL(_ path: String, in folder: URL, manifest file: String) throws -> URL {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(".."), !path.contains("\0") else {
            throw CheckpointError(
                file: file,
                detail: "weight shard path '\(Pickle.printable(path))' leaves the model's folder (only files beside model.json are read)")
        }
        let shard = folder.appendingPathComponent(path)
        let root = folder.resolvingSymlinksInPath().standardizedFileURL.path
        let resolved = shard.resolvingSymlinksInPath().standardizedFileURL.path
        guard resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw CheckpointError(
                file: file, detail: "weight shard '\(Pickle.printable(path))' resolves to \(resolved), outside the model's folder \(root)")
        }
        return shard
    }

    static func convert(name: String, shape: [Int], values: [Float], file: String) throws -> (String, Tensor) {
        let parts = name.split(separator: "/")
        guard parts.count >= 2 else { throw CheckpointError(file: file, detail: "unexpected weight name '\(name)'") }
        let layer = parts.dropLast().joined(separator: "/"), param = String(parts.last!)
        func permuted(_ order: [Int]) -> Tensor {
            let out = Shape(order.map { shape[$0] })
            let t = Tensor(zeros: out)
            var inStrides = [Int](repeating: 1, count: shape.count)
            for d in stride(from: shape.count - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
            var index = [Int](repeating: 0, count: out.rank)
            for i in 0..<out.count {
                t.floats[i] = values[zip(index, order).reduce(0) { $0 + $1.0 * inStrides[$1.1] }]
                var d = out.rank - 1
                while d >= 0 { index[d] += 1; if index[d] < out[d] { break }; index[d] = 0; d -= 1 }
            }
            return t
        }
        switch (param, shape.count) {
        case ("kernel", 4): return ("\(layer).weight", permuted([3, 2, 0, 1]))  // HWIO → OIHW
        case ("depthwise_kernel", 4): return ("\(layer).weight", permuted([2, 3, 0, 1]))  // HWC1 → C1HW
        case ("kernel", 2): return ("\(layer).weight", permuted([1, 0]))  // [in, out] → [out, in]
        case ("bias", 1), ("beta", 1): return ("\(layer).bias", Tensor(shape: Shape(shape), values: values))
        case ("gamma", 1): return ("\(layer).weight", Tensor(shape: Shape(shape), values: values))
        case ("moving_mean", 1): return ("\(layer).running_mean", Tensor(shape: Shape(shape), values: values))
        case ("moving_variance", 1): return ("\(layer).running_var", Tensor(shape: Shape(shape), values: values))
        default: throw CheckpointError(file: file, detail: "'\(name)': unknown parameter kind with shape \(shape)")
        }
    }
}
