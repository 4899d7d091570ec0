import Foundation

/// Runs ONNX's own backend test data (the `onnx` wheel's `onnx/backend/test/data`) through Kiln:
/// each case is imported, compiled (fused, memory-planned) and run, and its output compared with
/// the reference within the suite's tolerances (|actual − expected| ≤ atol + rtol·|expected|).
public enum ONNXConformance {
    public struct Case: Sendable {
        public let name: String
        public let model: URL
        /// Inputs in graph-input order; nil for the `light` models, whose input the suite generates.
        public let inputs: [URL]?
        public let outputs: [URL]
    }

    public enum Outcome: Sendable {
        case passed(maxError: Float)
        case failed(String)
        /// Import refused the model: the op (or feature) and why.
        case unsupported(op: String, detail: String)
    }

    /// The suite's default tolerances (onnx.backend.test.loader).
    public static let rtol: Float = 1e-3, atol: Float = 1e-7

    /// Every case under `root`: `light/light_*.onnx` with `light_*_output_0.pb`, and folders
    /// holding `model.onnx` and `test_data_set_0/{input,output}_k.pb`.
    public static func cases(in root: URL) -> [Case] {
        let fm = FileManager.default
        var found: [Case] = []
        guard let walker = fm.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        for case let url as URL in walker {
            let name = url.lastPathComponent
            if name == "model.onnx" {
                let set = url.deletingLastPathComponent().appendingPathComponent("test_data_set_0")
                let files = (try? fm.contentsOfDirectory(atPath: set.path)) ?? []
                let pick = { (prefix: String) in
                    files.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".pb") }.sorted { index($0) < index($1) }.map {
                        set.appendingPathComponent($0)
                    }
                }
                let dir = url.deletingLastPathComponent()
                let relative = dir.path.replacingOccurrences(of: root.path + "/", with: "")
                found.append(Case(name: relative, model: url, inputs: pick("input_"), outputs: pick("output_")))
            } else if name.hasPrefix("light_"), name.hasSuffix(".onnx") {
                let stem = String(name.dropLast(5))
                let output = url.deletingLastPathComponent().appendingPathComponent("\(stem)_output_0.pb")
                found.append(Case(name: "light/\(stem)", model: url, inputs: nil, outputs: [output]))
            }
        }
        return found.sorted { $0.name < $1.name }
    }

    private static func index(_ file: String) -> Int {
        Int(file.split(separator: "_").last?.split(separator: ".").first ?? "") ?? 0
    }

    /// Reads a serialized TensorProto (.pb) as float32.
    public static func readTensor(_ url: URL) throws -> Tensor {
        let data = try Data(contentsOf: url)
        let proto: Onnx_TensorProto
        do { proto = try Onnx_TensorProto(serializedBytes: data) } catch {
            throw ONNXError(file: url.path, detail: "not a serialized TensorProto (\(error))")
        }
        let c = try ONNXTensorDecoder(file: url.path, folder: nil).decode(
            proto, what: proto.name.isEmpty ? url.lastPathComponent : proto.name)
        return c.tensor()
    }

    public static func run(_ test: Case) -> Outcome {
        do {
            let model = try ONNXModel(contentsOf: test.model)
            guard model.declaredInputType == 1 else {
                return .unsupported(
                    op: "(input type)",
                    detail:
                        "the input is \(model.declaredInputType == 11 ? "float64" : "of type \(model.declaredInputType)"); Kiln computes in float32"
                )
            }
            let input: Tensor
            if let files = test.inputs {
                guard files.count == 1 else { return .unsupported(op: "(inputs)", detail: "\(files.count) inputs; Kiln imports one") }
                input = try readTensor(files[0])
            } else {
                // onnx.backend.test.runner's dummy input: arange(n).reshape(shape) / n.
                let dims = model.declaredInputShape.map { $0 ?? 1 }
                let n = dims.reduce(1, *)
                input = Tensor(shape: Shape(dims), values: (0..<n).map { Float(Double($0) / Double(n)) })
            }
            let graph: Graph
            do {
                graph = try Compiler.inference(model, input: input.shape)
            } catch let error as ONNXError {
                return .unsupported(op: error.op.map { String($0.split(separator: ",")[0]) } ?? "(model)", detail: error.detail)
            }
            // The fused graph keeps every parameter and buffer as an input: its state values are the model's.
            let store = try model.pretrainedParameters(for: graph, seed: 0)
            let executor = try Executor(graph: graph, parameters: store)
            let outputs = try executor.run(["input": input])
            guard let actual = outputs["logits"], let expectedURL = test.outputs.first else { return .failed("no output") }
            let expected = try readTensor(expectedURL)
            guard actual.count == expected.count else { return .failed("output \(actual.shape), expected \(expected.shape)") }
            var worst: Float = 0, violations = 0
            for i in 0..<expected.count {
                let (a, e) = (actual.floats[i], expected.floats[i])
                if a.isNaN && e.isNaN { continue }  // numpy's assert_allclose: NaN equals NaN
                let error = abs(a - e)
                worst = max(worst, error / max(abs(e), 1e-6))
                if !(error <= atol + rtol * abs(e)) { violations += 1 }
            }
            return violations == 0
                ? .passed(maxError: worst)
                : .failed("\(violations) of \(expected.count) values outside tolerance (worst relative error \(worst))")
        } catch let error as ONNXError {
            return .unsupported(op: error.op.map { String($0.split(separator: ",")[0]) } ?? "(model)", detail: error.detail)
        } catch {
            return .failed("\(error)")
        }
    }
}
