import Foundation
import Kiln

/// How a model is trained: one row of the study.
public enum Strategy: String, Codable, Sendable, CaseIterable {
    /// Random initialisation, every layer trains.
    case scratch
    /// Pretrained backbone, every layer trains (new classifier).
    case finetune
    /// Pretrained backbone frozen (BN on running statistics), only the classifier trains.
    case frozen
}

/// Everything needed to reproduce one training run; saved as config.json in its folder.
public struct RunConfig: Codable, Sendable {
    public var model: String
    public var width: Double?
    public var strategy: Strategy
    /// Pretrained weights file, and what they are (reports state it).
    public var weights: String?
    public var pretraining: String = "none"
    public var epochs: Int = 10
    public var batchSize: Int = 32
    public var learningRate: Double = 0.01
    public var optimizer: String = "sgd"
    public var momentum: Double = 0.9
    public var weightDecay: Double = 1e-4
    public var schedule: String = "cosine"
    public var fraction: Double = 1
    public var seed: UInt64 = 0
    public var inputSize: Int = 224
    public var augment = true
    /// Frozen strategy: memoise the frozen backbone's outputs per (image, variant) and train the
    /// head on them (`FeatureCache`); nil means on. Training then augments with `cacheVariants`
    /// dihedral variants of the centre crop instead of random crops.
    public var featureCache: Bool?
    /// How many of the 8 dihedral variants a cached run draws from (nil: 2, the crop and its mirror).
    public var cacheVariants: Int?
    /// The classifier's fit: "sgd" (nil) or "ridge", closed-form on the cached features.
    public var head: String?

    /// Whether a frozen run caches its backbone's features.
    public var usesFeatureCache: Bool { strategy == .frozen && (featureCache ?? true) || head == "ridge" }
    public var variantCount: Int { augment ? min(max(cacheVariants ?? 2, 1), 8) : 1 }

    public init(model: String, width: Double? = nil, strategy: Strategy) {
        self.model = model
        self.width = width
        self.strategy = strategy
    }

    /// The label a report uses, e.g. "resnet18 · frozen".
    public var label: String {
        // An imported model is named by its file (a path's slashes would nest run folders).
        let name =
            Zoo.isONNX(model)
            ? URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
            : width.map { model == "mobilenet-v2" ? "mobilenet-v2-\($0)" : "\(model)×\($0)" } ?? model
        return "\(name) · \(strategy.rawValue)" + (head == "ridge" ? " · ridge" : "")
    }

    /// Input scaling of the model's pretraining: [-1, 1] for the Keras/TF.js MobileNetV2, ImageNet mean/std otherwise.
    public var normalization: Transform {
        model == "mobilenet-v2" ? .scaleToSymmetricUnit : .imageNetNormalization
    }

    public var trainStepConfiguration: TrainStep.Configuration {
        let lr = Float(learningRate)
        let opt: Optimizer =
            switch optimizer {
            case "adam": .adam(.init(learningRate: lr, weightDecay: Float(weightDecay)))
            case "adamw": .adamW(learningRate: lr, weightDecay: Float(weightDecay))
            default: .sgd(.init(learningRate: lr, momentum: Float(momentum), weightDecay: Float(weightDecay)))
            }
        let sched: LRSchedule =
            switch schedule {
            case "constant": .constant
            case "step": .step(stepSize: max(1, epochs / 3), gamma: 0.1)
            default: .cosine(tMax: epochs, etaMin: 0)
            }
        return .init(optimizer: opt, schedule: sched, trainOnly: strategy == .frozen ? [classifier] : nil, seed: seed)
    }

    public var classifier: String { (try? Zoo.entry(model).classifier) ?? "fc" }

    /// The configuration saved in a run folder by `Trainer`.
    public static func read(runFolder: URL) throws -> RunConfig {
        let url = runFolder.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url) else {
            throw StudyError("\(runFolder.path): not a run folder (no config.json; `landuse train --out \(runFolder.path)` writes one)")
        }
        do { return try JSONDecoder().decode(RunConfig.self, from: data) } catch {
            throw StudyError("\(url.path): not a run configuration: \(error)")
        }
    }
}

public struct StudyError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import KilnData
import KilnModels

extension RunConfig {
    /// Training and evaluation transforms: random crop, flips and 90° rotations for training
    /// (aerial images have no "up"), a center crop for evaluation, then the model's normalisation.
    public var trainTransforms: [Transform] {
        (augment ? [.randomCrop(inputSize), .randomHorizontalFlip, .randomVerticalFlip, .randomRotation90] : [.centerCrop(inputSize)]) + [
            normalization
        ]
    }
    public var evalTransforms: [Transform] { [.centerCrop(inputSize), normalization] }
    /// Cached images are stored with this shorter side (256 for 224 crops, as ImageNet practice).
    public var baseSize: Int { Int((Double(inputSize) * 8 / 7).rounded()) }
}
