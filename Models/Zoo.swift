import Foundation
import Kiln

/// The model registry: names as the CLIs accept them.
public enum Zoo {
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        /// Input side the model was designed for.
        public let defaultInputSize: Int
        /// Module name of the classifier (what `--non-strict` and freezing treat as the head).
        public let classifier: String
        let make: @Sendable (_ classes: Int, _ width: Double?, _ batchNormMomentum: Float?) -> any Layer
    }

    public static let entries: [Entry] = [
        Entry(
            name: "resnet18", summary: "torchvision ResNet-18 (11.7M params at 1000 classes)",
            defaultInputSize: 224, classifier: "fc"
        ) { classes, width, _ in
            ResNet18(classes: classes, width: Int(((width ?? 1) * 64).rounded()))
        },
        Entry(
            name: "basic-cnn", summary: "the course's 4-block baseline CNN",
            defaultInputSize: 224, classifier: "fc"
        ) { classes, width, _ in
            BasicCNN(classes: classes, channels: [32, 64, 128, 256].map { Int((Double($0) * (width ?? 1)).rounded()) })
        },
        Entry(
            name: "mobilenet-v2", summary: "Keras MobileNetV2 with width multiplier (0.35, 0.5, 0.75, 1.0, …)",
            defaultInputSize: 224, classifier: "predictions"
        ) { classes, width, momentum in
            MobileNetV2(classes: classes, width: width ?? 1, batchNormMomentum: momentum ?? 0.001)
        },
    ]

    public static var names: [String] { entries.map(\.name) }

    /// Whether `name` is an ONNX file rather than a zoo name.
    public static func isONNX(_ name: String) -> Bool { name.lowercased().hasSuffix(".onnx") }

    public static func entry(_ name: String) throws -> Entry {
        if isONNX(name) {
            // The file's own architecture; its classifier's module (parameter prefix) is the head.
            let model = try ONNXModel(contentsOf: URL(fileURLWithPath: name))
            let declared = model.declaredInputShape
            return Entry(
                name: name, summary: "ONNX model \(name)",
                defaultInputSize: declared.count == 4 ? declared[3] ?? 224 : 224, classifier: model.classifierModule ?? ""
            ) { _, _, _ in
                model  // `Zoo.model` resizes an ONNX model's head itself (it can throw); this entry describes the file
            }
        }
        guard let entry = entries.first(where: { $0.name == name }) else { throw ZooError.unknownModel(name, known: names) }
        return entry
    }

    /// The model's layers. `width` is the channel multiplier (1 = the published architecture);
    /// `batchNormMomentum` overrides the Keras MobileNetV2's 0.001 (PyTorch convention).
    public static func model(_ name: String, classes: Int, width: Double? = nil, batchNormMomentum: Float? = nil) throws -> any Layer {
        guard classes >= 1 else { throw ZooError.invalidArgument("classes must be ≥ 1, got \(classes)") }
        if let width, !(width > 0) { throw ZooError.invalidArgument("width must be > 0, got \(width)") }
        if isONNX(name) { return try ONNXModel(contentsOf: URL(fileURLWithPath: name), classes: classes) }
        return try entry(name).make(classes, width, batchNormMomentum)
    }
}

public enum ZooError: Error, CustomStringConvertible {
    case unknownModel(String, known: [String])
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unknownModel(name, known): "unknown model '\(name)' (known: \(known.joined(separator: ", ")))"
        case let .invalidArgument(detail): detail
        }
    }
}
