import Foundation
import Testing

@testable import Kiln
@testable import KilnModels

/// Export to ONNX, checked by importing the file again (Kiln's importer) and, when a Python with
/// onnxruntime is on the PATH, by ONNX Runtime.
struct ONNXExportTests {
    static let onnxRuntimePython: String? = {
        for python in ["python3", "python"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [python, "-c", "import onnxruntime, numpy"]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            guard (try? p.run()) != nil else { continue }
            p.waitUntilExit()
            if p.terminationStatus == 0 { return python }
        }
        return nil
    }()

    static let zoo: [(String, Double?, Int)] = [("resnet18", 0.25, 32), ("basic-cnn", 0.25, 32), ("mobilenet-v2", 0.35, 32)]

    func input(_ shape: Shape) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.count).map { Float(sin(Double($0) * 0.731)) })
    }

    /// Logits of the compiled zoo model with random weights and non-trivial BN statistics, and the
    /// exported file.
    func exported(_ name: String, width: Double?, side: Int, keepBatchNorm: Bool) throws -> (Tensor, Tensor, URL) {
        let layers = try Zoo.model(name, classes: 21, width: width)
        let x = input([2, 3, side, side])
        let plain = try Compiler.inference(layers, input: x.shape, fuse: false)
        let store = ParameterStore(graph: plain, seed: 3)
        for value in plain.buffers where value.name.hasSuffix("running_var") || value.name.hasSuffix("running_mean") {
            let t = store[value.name]!
            for i in 0..<t.count { t.floats[i] = value.name.hasSuffix("var") ? 0.5 + Float(i % 7) * 0.1 : Float(i % 5) * 0.05 - 0.1 }
        }
        let logits = try Executor(graph: try Compiler.inference(layers, input: x.shape), parameters: store).run(["input": x])["logits"]!
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-export-\(name)-\(UUID().uuidString).onnx")
        try ONNXExport.write(plain, parameters: store, to: url, options: .init(keepBatchNorm: keepBatchNorm, metadata: ["classes": "21"]))
        return (x, logits, url)
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / b.scalars.map(abs).max()!
    }

    @Test(arguments: [false, true])
    func exportedZooModelsImportBackToTheSameLogits(keepBatchNorm: Bool) throws {
        for (name, width, side) in Self.zoo {
            let (x, logits, url) = try exported(name, width: width, side: side, keepBatchNorm: keepBatchNorm)
            defer { try? FileManager.default.removeItem(at: url) }
            let model = try ONNXModel(contentsOf: url)
            #expect(model.opset == 17)
            let graph = try Compiler.inference(model, input: x.shape)
            let store = try model.pretrainedParameters(for: graph, seed: 0)
            let again = try Executor(graph: graph, parameters: store).run(["input": x])["logits"]!
            #expect(again.shape == logits.shape)
            #expect(relativeError(again, logits) < 1e-4, "\(name), keepBatchNorm \(keepBatchNorm)")
            let unfused = try Compiler.inference(model, input: x.shape, fuse: false)
            let batchNorms = unfused.nodes.filter { $0.op is BatchNormOp }.count
            #expect(keepBatchNorm ? batchNorms > 0 : batchNorms == 0, "\(name): \(batchNorms) BatchNormalization nodes")
            // Kept BatchNorm fuses into the conv before it again, as in the zoo model.
            if keepBatchNorm { #expect(graph.nodes.contains { $0.fused.count > 1 }) }
        }
    }

    @Test(.enabled(if: onnxRuntimePython != nil, "needs a Python with onnxruntime and numpy on the PATH"))
    func onnxRuntimeAgreesWithKiln() throws {
        for (name, width, side) in Self.zoo {
            let (x, logits, url) = try exported(name, width: width, side: side, keepBatchNorm: false)
            let folder = url.deletingLastPathComponent()
            let xin = folder.appendingPathComponent("\(url.lastPathComponent).x.npy"),
                yout = folder.appendingPathComponent("\(url.lastPathComponent).y.npy")
            defer { for f in [url, xin, yout] { try? FileManager.default.removeItem(at: f) } }
            try NPY.write(x, to: xin)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [
                Self.onnxRuntimePython!, "-c",
                "import sys, numpy as np, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]); np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])",
                url.path, xin.path, yout.path,
            ]
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "onnxruntime failed on \(name)")
            guard p.terminationStatus == 0 else { continue }
            let theirs = try NPY.read(yout)
            #expect(relativeError(theirs, logits) < 1e-4, "\(name): ONNX Runtime vs Kiln")
        }
    }

    @Test func nonFiniteWeightsAreNotWritten() throws {
        let layers = try Zoo.model("basic-cnn", classes: 3, width: 0.25)
        let graph = try Compiler.inference(layers, input: [1, 3, 16, 16], fuse: false)
        let store = ParameterStore(graph: graph)
        store["fc.weight"]!.floats[2] = .nan
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-nan-\(UUID().uuidString).onnx")
        #expect(throws: ONNXError.self) { try ONNXExport.write(graph, parameters: store, to: url) }
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }
}
