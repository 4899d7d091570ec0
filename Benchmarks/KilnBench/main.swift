import ArgumentParser
import CKernels
import Dispatch
import Foundation
import Kiln
import KilnModels

/// Times zoo models' inference at a fixed batch and thread count and prints images/s and
/// GFLOP/s, plus the ratio to the reference figures of DESIGN.md (same machine kind).
@main
struct KilnBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln-bench",
        abstract: "Benchmark Kiln inference (ResNet-18 and the basic CNN by default)."
    )

    @Option(help: "Comma-separated zoo models.") var models = "resnet18,basic-cnn"
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Input side in pixels.") var inputSize = 224
    @Option(help: "Threads for kernels and OpenBLAS.") var threads = 2
    @Option(help: "Timed iterations (after one warm-up).") var iterations = 3
    @Option(help: "Classes of the classifier.") var classes = 1000

    /// Reference inference throughput (img/s, batch 32, 224², 2 threads) from DESIGN.md.
    static let references: [String: [(String, Double)]] = [
        "resnet18": [("PyTorch eager", 17.6), ("ONNX Runtime", 34.2)],
    ]

    func run() throws {
        Threads.count = threads
        print("kiln-bench: batch \(batch), \(inputSize)², \(threads) threads, \(iterations) iterations after warm-up")
        let sgemm = Self.sgemmRate()
        print(String(format: "sgemm 1024³ (OpenBLAS, one block per thread): %.1f GFLOP/s", sgemm))
        for name in models.split(separator: ",").map(String.init) {
            let graph = try Graph.trace(try Zoo.model(name, classes: classes), input: [batch, 3, inputSize, inputSize])
            let executor = try Executor(graph: graph, parameters: ParameterStore(graph: graph, seed: 1))
            let input = Tensor(zeros: [batch, 3, inputSize, inputSize])
            for i in 0..<input.count { input.floats[i] = Float(i % 251) / 251 - 0.5 }
            try executor.run(["input": input])
            var times: [Double] = []
            for _ in 0..<iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                try executor.run(["input": input])
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            let best = times.min()!, median = times.sorted()[times.count / 2]
            let flops = FlopCounter.forward(graph)
            let ips = Double(batch) / median
            print(String(format: "%@ inference: %.1f img/s (median %.3f s/batch, best %.3f s), %.1f GFLOP/s, %.2f GFLOP/img, activations %.0f MiB",
                         name, ips, median, best, flops / median / 1e9, flops / Double(batch) / 1e9,
                         Double(executor.activationBytes) / 1_048_576))
            print(String(format: "  conv+linear efficiency vs sgemm: %.0f%%", 100 * flops / median / 1e9 / sgemm))
            for (label, reference) in Self.references[name] ?? [] {
                print(String(format: "  vs %@ %.1f img/s: ratio %.2f", label, reference, ips / reference))
            }
        }
    }

    /// Best of five 1024×1024×1024 sgemm calls, in GFLOP/s.
    static func sgemmRate(size n: Int = 1024) -> Double {
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var best = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            kn_sgemm(0, 0, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * pow(Double(n), 3) / best / 1e9
    }
}
