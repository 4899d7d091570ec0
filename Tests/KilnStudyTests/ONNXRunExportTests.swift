import Foundation
import Kiln
import KilnData
import KilnStudy
import Testing

/// `landuse export` of a trained run, run in ONNX Runtime: the same top-1 classes as
/// `landuse predict` on the same images. Needs a Python with onnxruntime and numpy on the PATH.
struct ONNXRunExportTests {
    static let python: String? = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import onnxruntime, numpy"]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? "python3" : nil
    }()

    func tool(_ name: String, _ args: [String]) throws -> (Int32, String) {
        name == "landuse"
            ? try runToCompletion(builtToolsFolder.appendingPathComponent("landuse"), args)
            : try runToCompletion(URL(fileURLWithPath: "/usr/bin/env"), [name] + args)
    }

    @Test(.enabled(if: python != nil, "needs a Python with onnxruntime and numpy on the PATH"))
    func exportedRunPredictsTheSameClassesInONNXRuntime() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-export-run-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        var images: [URL] = []
        for (label, name) in ["forest", "river", "beach"].enumerated() {
            let dir = root.appendingPathComponent("data/\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for i in 0..<8 {
                let url = dir.appendingPathComponent("\(i).png")
                try ImageDecoder.write(
                    SyntheticLandUse.render(label: [7, 16, 2][label], index: i, size: 20, seed: 1), to: url, format: .png)
                images.append(url)
            }
        }
        let run = root.appendingPathComponent("run")
        let (trained, log) = try tool(
            "landuse",
            [
                "train", "--data", root.appendingPathComponent("data").path, "--input-size", "16", "--epochs", "2", "--batch", "4",
                "--model", "basic-cnn", "--out", run.path,
            ])
        try #require(trained == 0, "\(log)")
        let model = root.appendingPathComponent("m.onnx")
        let (exported, exportLog) = try tool("landuse", ["export", "--run", run.path, "--output", model.path])
        try #require(exported == 0, "\(exportLog)")

        // predict's top-1 per image.
        let (predicted, predictions) = try tool("landuse", ["predict", "--run", run.path, "--top-k", "1"] + images.map(\.path))
        try #require(predicted == 0, "\(predictions)")
        let kiln = predictions.split(separator: "\n").map { line in String(line.split(separator: ": ").last!.split(separator: " ").first!) }

        // The same preprocessing as predict, the tensors to ONNX Runtime.
        let config = try RunConfig.read(runFolder: run)
        let side = config.inputSize
        let batch = Tensor(zeros: [images.count, 3, side, side])
        for (i, url) in images.enumerated() {
            var rng = SplitMix(seed: 0)
            let decoded = FloatImage(try ImageDecoder.decode(url))
            let image = ([.resize(config.baseSize)] + config.evalTransforms).reduce(decoded) { $1.apply($0, rng: &rng) }
            image.writeCHW(to: batch.floats + i * 3 * side * side)
        }
        let input = root.appendingPathComponent("x.npy")
        try NPY.write(batch, to: input)
        let script = """
            import sys, numpy as np, onnxruntime as ort
            s = ort.InferenceSession(sys.argv[1])
            classes = s.get_modelmeta().custom_metadata_map["classes"].split(",")
            y = s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0]
            print("\\n".join(classes[i] for i in y.argmax(1)))
            """
        let (status, ort) = try tool(Self.python!, ["-c", script, model.path, input.path])
        try #require(status == 0, "\(ort)")
        let theirs = ort.split(separator: "\n").map(String.init)
        #expect(theirs == kiln, "ONNX Runtime: \(theirs)\nlanduse predict: \(kiln)")
    }
}
