// Image decoding and encoding through libjpeg, libpng and libtiff, with every library error
// turned into a return code and a message (libjpeg's default handler would exit the process).
#ifndef KILN_CODECS_H
#define KILN_CODECS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height;
    /// Interleaved 8-bit RGB, width*height*3 bytes, owned by the caller after a successful decode
    /// (free with kn_image_free).
    uint8_t *rgb;
    /// Set on failure.
    char error[256];
} kn_image;

/// Decoders refuse, before allocating, an image of more than `max_pixels` pixels (a header can
/// declare 16384² pixels in a few bytes), and report a failed allocation as an error.
/// 0 on success. Grayscale is expanded to RGB; CMYK/YCCK JPEGs are refused.
int kn_decode_jpeg(const uint8_t *data, size_t size, int64_t max_pixels, kn_image *out);
/// 0 on success. Palette and grayscale are expanded, alpha is composited over black.
int kn_decode_png(const uint8_t *data, size_t size, int64_t max_pixels, kn_image *out);
/// 0 on success; reads the first directory of a TIFF file.
int kn_decode_tiff(const char *path, int64_t max_pixels, kn_image *out);
/// Nonzero (and an error message in `out`) when a width × height image is empty or too large.
int kn_image_size_refused(uint64_t width, uint64_t height, int64_t max_pixels, kn_image *out);
void kn_image_free(kn_image *image);

/// Encoders (RGB8 in; used to write test images). Return 0 on success.
int kn_encode_jpeg(const char *path, const uint8_t *rgb, int width, int height, int quality, char *error);
int kn_encode_png(const char *path, const uint8_t *rgb, int width, int height, char *error);
int kn_encode_tiff(const char *path, const uint8_t *rgb, int width, int height, char *error);

/// Bilinear resize of a float HWC image, antialiased when shrinking.
void kn_resize_bilinear(const float *src, int h, int w, int channels, float *dst, int oh, int ow);

#endif
