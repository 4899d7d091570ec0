import ArgumentParser
import Dispatch
import Foundation
import Kiln
import KilnMPI
import KilnModels

extension KilnBench {
    /// Data-parallel training steps under mpirun: every rank times its share of each global batch
    /// (the steps keep the ranks in lockstep); rank 0 prints the job's throughput and the allreduce's
    /// share of a step (time in the bucket calls, and of it the wait after the backward pass).
    func runDistributed(_ job: MPICommunicator) throws {
        guard batch % job.size == 0 else { throw ValidationError("--batch \(batch) must split evenly over \(job.size) ranks") }
        let rankBatch = batch / job.size
        let say = { (line: String) in if job.rank == 0 { print(line) } }
        say(
            "kiln-bench (data-parallel): \(job.size) ranks × \(threads) threads, global batch \(batch) (\(rankBatch) per rank), \(inputSize)², \(iterations) iterations after warm-up"
        )
        say("cpu: \(Self.cpuModel); kernels: \(InstructionSet.active)")
        for name in workloads.split(separator: ",") {
            guard let workload = Workload(rawValue: String(name)),
                [.resnet18Train, .resnet18Frozen, .basicCNNTrain, .mobileNetTrain, .mobileNetFrozen].contains(workload)
            else { throw ValidationError("'\(name)' is not a training workload (data-parallel mode times training steps)") }
            let model = try Zoo.model(workload.model, classes: classes, width: workload.width)
            let shape: Shape = [rankBatch, 3, inputSize, inputSize]
            let input = Tensor(zeros: shape)
            for i in 0..<input.count { input.floats[i] = Float((i + job.rank * 7) % 251) / 251 - 0.5 }
            let labels = Tensor(shape: [rankBatch], int64s: (0..<rankBatch).map { Int64(($0 + job.rank) % classes) })
            var configuration = TrainStep.Configuration(
                optimizer: .sgd(.init(learningRate: 0.01, momentum: 0.9)),
                trainOnly: [.resnet18Frozen, .mobileNetFrozen].contains(workload) ? [workload.classifier] : nil, fuse: !unfused)
            configuration.dataParallel = DataParallel(communicator: job)
            let step = try TrainStep(model: model, inputShape: shape, configuration: configuration)
            try step.run(images: input, labels: labels)
            let warm = step.communicationStatistics
            var times: [Double] = []
            for _ in 0..<iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                try step.run(images: input, labels: labels)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            let after = step.communicationStatistics
            let (median, total) = (times.sorted()[times.count / 2], times.reduce(0, +))
            let (communication, wait) = (after.seconds - warm.seconds, after.waitSeconds - warm.waitSeconds)
            let megabytes = Double(after.bytes - warm.bytes) / Double(max(after.steps - warm.steps, 1)) / 1e6
            say(
                String(
                    format:
                        "%@: %.1f img/s (median %.3f s/step), allreduce %.1f MB/step in %d buckets: %.0f%% of step time (%.0f%% waiting after the backward pass)",
                    workload.rawValue, Double(batch) / median, median, megabytes, after.buckets / max(after.steps, 1),
                    100 * communication / total, 100 * wait / total))
        }
    }
}
