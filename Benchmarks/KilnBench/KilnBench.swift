import ArgumentParser
import CKernels
import Dispatch
import Foundation
import Kiln
import KilnMPI
import KilnModels

/// Times inference and training steps of zoo models at a fixed batch and thread count and prints
/// images/s, GFLOP/s (as a share of the multiply-add peak it measures on the active instruction
/// set) and peak RSS. Ratios to PyTorch, torch.compile and ONNX Runtime come from
/// Benchmarks/side_by_side.sh, which runs them beside it. Peak RSS is the process maximum: run one
/// workload per process to attribute it. Under `mpirun -np N`, training workloads run
/// data-parallel (each rank on batch/N images, gradients allreduced) and rank 0 prints the job's
/// images/s and the share of a step spent in the allreduce.
@main
struct KilnBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln-bench",
        abstract: "Benchmark Kiln inference and training steps."
    )

    @Option(help: "Comma-separated workloads: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workloads = "resnet18-infer,basic-cnn-infer"
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Input side in pixels.") var inputSize = 224
    @Option(help: "Threads for kernels.") var threads = 2
    @Flag(help: "Print the instruction-set paths this CPU runs (one per line) and exit.") var listInstructionSets = false
    @Option(help: "Timed iterations (after one warm-up).") var iterations = 3
    @Option(help: "Classes of the classifier.") var classes = 21
    @Flag(help: "Run the unfused graphs.") var unfused = false
    @Flag(help: "Keep every saved activation (no rematerialization in training steps).") var noRematerialize = false
    @Flag(help: "Print the slowest steps of inference workloads.") var profile = false

    enum Workload: String, CaseIterable {
        case resnet18Infer = "resnet18-infer", resnet18Train = "resnet18-train", resnet18Frozen = "resnet18-frozen"
        case basicCNNInfer = "basic-cnn-infer", basicCNNTrain = "basic-cnn-train"
        case mobileNetInfer = "mobilenet-infer", mobileNetTrain = "mobilenet-train", mobileNetFrozen = "mobilenet-frozen"

        var model: String { rawValue.hasPrefix("resnet18") ? "resnet18" : rawValue.hasPrefix("mobilenet") ? "mobilenet-v2" : "basic-cnn" }
        var width: Double? { model == "mobilenet-v2" ? 0.35 : nil }
        var classifier: String { model == "mobilenet-v2" ? "predictions" : "fc" }

    }

    func run() throws {
        if listInstructionSets {
            for isa in InstructionSet.supported { print(isa) }
            return
        }
        Threads.count = threads
        if let job = try MPICommunicator.launched() {
            defer { job.finalize() }
            return try runDistributed(job)
        }
        print(
            "kiln-bench: batch \(batch), \(inputSize)², \(threads) threads, \(iterations) iterations after warm-up\(unfused ? ", unfused" : "")\(noRematerialize ? ", no rematerialization" : "")"
        )
        let sgemm = Self.sgemmRate()
        let peak = kn_fma_peak_gflops(100_000_000)
        if let problem = InstructionSet.requestProblem { print("warning: \(problem)") }
        print("cpu: \(Self.cpuModel)")
        print(
            "kernels: \(InstructionSet.active) (this CPU: \(InstructionSet.supported.map(\.description).joined(separator: ", ")); default \(InstructionSet.preferred))"
        )
        print(String(format: "multiply-add peak (%@, %d threads, measured): %.1f GFLOP/s", "\(InstructionSet.active)", threads, peak))
        print(String(format: "sgemm 1024³ (Kiln's GEMM, one block per thread): %.1f GFLOP/s, %.0f%% of peak", sgemm, 100 * sgemm / peak))
        for name in workloads.split(separator: ",") {
            guard let workload = Workload(rawValue: String(name)) else {
                throw ValidationError("unknown workload '\(name)'")
            }
            try measure(workload, peak: peak)
        }
    }

    func measure(_ workload: Workload, peak: Double) throws {
        let model = try Zoo.model(workload.model, classes: classes, width: workload.width)
        let shape: Shape = [batch, 3, inputSize, inputSize]
        let input = Tensor(zeros: shape)
        for i in 0..<input.count { input.floats[i] = Float(i % 251) / 251 - 0.5 }
        let labels = Tensor(shape: [batch], int64s: (0..<batch).map { Int64($0 % classes) })
        let step: () throws -> Void
        var profiled: Executor?
        switch workload {
        case .resnet18Infer, .basicCNNInfer, .mobileNetInfer:
            let graph = try Compiler.inference(model, input: shape, fuse: !unfused)
            let executor = try Executor(graph: graph, parameters: ParameterStore(graph: graph, seed: 1), constantWeights: true)
            if profile { executor.stepTimes = [:]; profiled = executor }
            step = { try executor.run(["input": input]) }
        case .resnet18Train, .resnet18Frozen, .basicCNNTrain, .mobileNetTrain, .mobileNetFrozen:
            var configuration = TrainStep.Configuration(
                optimizer: .sgd(.init(learningRate: 0.01, momentum: 0.9)),
                trainOnly: [.resnet18Frozen, .mobileNetFrozen].contains(workload) ? [workload.classifier] : nil,
                fuse: !unfused)
            configuration.rematerialize = !noRematerialize
            configuration.frozenWeightsConstant = true  // as landuse's trainer runs its steps
            let graph = try Compiler.training(model, input: shape, configuration)
            let executor = try Executor(
                graph: graph, parameters: ParameterStore(graph: graph, seed: 1), mode: .training,
                constantWeights: configuration.frozenWeightsConstant)
            if profile { executor.stepTimes = [:]; profiled = executor }
            var count: Int64 = 0
            step = {
                count += 1
                try executor.run(["input": input, "labels": labels], hyper: StepHyperparameters(learningRate: 0.01, step: count))
            }
        }
        try step()
        var times: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            try step()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let median = times.sorted()[times.count / 2]
        let forwardFlops = FlopCounter.forward(try Graph.trace(model, input: shape))
        let ips = Double(batch) / median
        let rss = Self.peakRSSMiB()
        print(
            String(
                format: "%@: %.1f img/s (median %.3f s/batch, best %.3f s), forward %.2f GFLOP/img, peak RSS %.0f MiB",
                workload.rawValue, ips, median, times.min()!, forwardFlops / Double(batch) / 1e9, rss))
        if [.resnet18Infer, .basicCNNInfer, .mobileNetInfer].contains(workload) {
            // Winograd convs do fewer multiplies than counted here: past 100% is possible.
            print(
                String(
                    format: "  %.1f GFLOP/s (direct-convolution count), %.0f%% of peak", forwardFlops / median / 1e9,
                    100 * forwardFlops / median / 1e9 / peak))
        }
        if let times = profiled?.stepTimes {
            for (name, t) in times.sorted(by: { $0.value > $1.value }).prefix(
                ProcessInfo.processInfo.environment["KILN_PROFILE_ROWS"].flatMap { Int($0) } ?? 14)
            {
                print("  " + name.padRight(36) + String(format: "%.1f ms/run", 1000 * t / Double(iterations + 1)))
            }
            // Totals by step kind: the part of the name after the forward node's (e.g. grad_weight).
            var byKind: [String: Double] = [:]
            for (name, t) in times {
                let kind =
                    name.split(separator: ".").last.map(String.init).flatMap { $0.hasPrefix("grad") || $0 == "update" ? $0 : nil }
                    ?? "forward"
                byKind[kind, default: 0] += t
            }
            for (kind, t) in byKind.sorted(by: { $0.value > $1.value }) {
                print("  total " + kind.padRight(30) + String(format: "%.1f ms/run", 1000 * t / Double(iterations + 1)))
            }
        }
    }

    /// The CPU's model name (Linux /proc/cpuinfo), for the record beside the figures.
    static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") })
        else { return "unknown" }
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }

    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Best of five 1024×1024×1024 GEMMs, in GFLOP/s.
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
