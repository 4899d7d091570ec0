import Foundation
import Kiln
import KilnData
import KilnModels
import Testing

/// Whole training steps on every instruction-set path this CPU has, side by side in one process
/// (each path set for this thread only), against the portable path: ResNet-18 (Winograd
/// F(2×2)/F(4×4), im2col, fused BN, pooling) and MobileNetV2 (depthwise, ReLU6). Each kernel is
/// compared on its own in InstructionSetKernelTests; `make test` also runs the kernel suite once
/// per path forced by KILN_ISA.
struct InstructionSetTests {
    struct Outcome {
        var loss: Float
        var logits: [Float]
        var parameters: [String: [Float]]
    }

    func batch(_ n: Int, side: Int, classes: Int) -> (Tensor, Tensor) {
        let x = Tensor(zeros: [n, 3, side, side])
        var rng = SplitMix(seed: 7)
        for i in 0..<x.count { x.floats[i] = Float(rng.next() % 2000) / 1000 - 1 }
        return (x, Tensor(shape: [n], int64s: (0..<n).map { Int64($0 % classes) }))
    }

    func outcome(_ model: some Layer, side: Int) throws -> Outcome {
        let (x, y) = batch(4, side: side, classes: 5)
        let step = try TrainStep(
            model: model, inputShape: x.shape, optimizer: .sgd(.init(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4)))
        let loss = try step.run(images: x, labels: y).loss
        let executor = try Executor(graph: try Compiler.inference(model, input: x.shape), parameters: step.parameters)
        let logits = try executor.run(["input": x])["logits"]!.scalars
        var parameters: [String: [Float]] = [:]
        for key in step.parameters.keys where !key.hasPrefix("optimizer.") && step.parameters[key]!.dtype == .float32 {
            parameters[key] = step.parameters[key]!.scalars
        }
        return Outcome(loss: loss, logits: logits, parameters: parameters)
    }

    /// max |a − b| over the scale of b, at least `floor` (a tensor whose values are all near zero,
    /// e.g. a bias whose gradient nearly cancels, is compared at that scale).
    func relative(_ a: [Float], _ b: [Float], floor: Double = 1e-30) -> Double {
        var diff = 0.0, scale = floor
        for (x, y) in zip(a, b) {
            diff = max(diff, Double(abs(x - y)))
            scale = max(scale, Double(abs(y)))
        }
        return diff / scale
    }

    /// `parameterTolerance`: after one step, relative to each tensor's scale (at least 1e-3).
    func compare(_ name: String, side: Int, parameterTolerance: Double, _ model: () -> some Layer) throws {
        let paths = InstructionSet.supported
        print("\(name): instruction sets on this CPU: \(paths.map(\.description).joined(separator: ", "))")
        guard let reference = try InstructionSet.onThisThread(.portable, { try outcome(model(), side: side) }) else {
            Issue.record("the portable path must always run")
            return
        }
        #expect(reference.loss.isFinite)
        for isa in paths where isa != .portable {
            let other = try #require(try InstructionSet.onThisThread(isa, { try outcome(model(), side: side) }))
            #expect(abs(other.loss - reference.loss) <= 1e-5 * max(1, abs(reference.loss)), "\(name) \(isa): loss")
            #expect(relative(other.logits, reference.logits) < 1e-4, "\(name) \(isa): logits")
            var worst = (0.0, "")
            for (key, value) in reference.parameters {
                let error = relative(other.parameters[key]!, value, floor: 1e-3)
                if error > worst.0 { worst = (error, key) }
            }
            print("\(name) \(isa) vs portable: loss \(other.loss) vs \(reference.loss), worst parameter \(worst.1) \(worst.0)")
            #expect(worst.0 < parameterTolerance, "\(name) \(isa): \(worst.1) differs by \(worst.0) after one step")
        }
    }

    @Test func resnetStepAgreesOnEveryPath() throws {
        try compare("resnet18 w32 64²", side: 64, parameterTolerance: 1e-4) { ResNet18(classes: 5, width: 32) }
    }

    /// Its last 1×1 conv sees 16 values per channel at 64²: one ReLU6 input within float32
    /// rounding of a kink flips its mask between paths (FMA or not) and moves that channel's
    /// gradient by a few 1e-3, hence the looser bound; loss and logits stay tight.
    @Test func mobilenetStepAgreesOnEveryPath() throws {
        try compare("mobilenet-v2 0.35 64²", side: 64, parameterTolerance: 1e-2) { MobileNetV2(classes: 5, width: 0.35) }
    }

    @Test func aRequestedPathIsUsedOrExplained() {
        // The process's path is the KILN_ISA request when supported, else the preferred one (with a reason).
        let request = ProcessInfo.processInfo.environment["KILN_ISA"] ?? ""
        if let forced = InstructionSet.allCases.first(where: { $0.description == request }),
            InstructionSet.supported.contains(forced)
        {
            #expect(InstructionSet.active == forced)
            #expect(InstructionSet.requestProblem == nil)
        } else {
            #expect(InstructionSet.active == InstructionSet.preferred)
            #expect(InstructionSet.supported.contains(InstructionSet.preferred))
            #expect((InstructionSet.requestProblem != nil) == !request.isEmpty)
        }
    }
}
