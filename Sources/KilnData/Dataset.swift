import Foundation

/// A labelled image collection: class names, one entry per image, and how to load an image.
public struct ImageDataset: Sendable {
    public struct Sample: Sendable, Hashable {
        /// Path relative to the dataset root (or a synthetic id), stable across runs: splits are saved by it.
        public let id: String
        public let label: Int
    }

    public let name: String
    public let classes: [String]
    public let samples: [Sample]
    /// Whether the images are procedurally generated (reports say so).
    public let isSynthetic: Bool
    let loader: @Sendable (Sample) throws -> RGBImage

    public init(
        name: String, classes: [String], samples: [Sample], isSynthetic: Bool,
        loader: @escaping @Sendable (Sample) throws -> RGBImage
    ) {
        (self.name, self.classes, self.samples, self.isSynthetic, self.loader) = (name, classes, samples, isSynthetic, loader)
    }

    public func load(_ sample: Sample) throws -> RGBImage { try loader(sample) }

    public func count(ofClass label: Int) -> Int { samples.filter { $0.label == label }.count }
}

public struct DatasetError: Error, CustomStringConvertible {
    public let detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { detail }
}

/// torchvision's ImageFolder layout: `root/<class>/<image>`, classes sorted by name. UC Merced's
/// `Images/` folder works as is. Only JPEG, PNG and TIFF files (by extension) are listed.
public enum ImageFolder {
    public static func scan(_ root: URL) throws -> ImageDataset {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError("\(root.path): no such data folder")
        }
        let classes = try fm.contentsOfDirectory(atPath: root.path).filter { name in
            var dir: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: root.appendingPathComponent(name).path, isDirectory: &dir) && dir.boolValue
        }.sorted()
        guard !classes.isEmpty else { throw DatasetError("\(root.path): no class folders (expected root/<class>/<images>)") }
        var samples: [ImageDataset.Sample] = []
        for (label, name) in classes.enumerated() {
            let files = try fm.contentsOfDirectory(atPath: root.appendingPathComponent(name).path)
                .filter { ImageDecoder.extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            samples += files.map { .init(id: "\(name)/\($0)", label: label) }
        }
        guard !samples.isEmpty else { throw DatasetError("\(root.path): no JPEG, PNG or TIFF images in the class folders") }
        return ImageDataset(name: root.lastPathComponent, classes: classes, samples: samples, isSynthetic: false) { sample in
            try ImageDecoder.decode(root.appendingPathComponent(sample.id))
        }
    }
}
