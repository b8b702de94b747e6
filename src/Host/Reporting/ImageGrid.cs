using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Reporting;

/// <summary>Sample grids as PNG: TorchVision's <c>make_grid</c> lays the images out, SkiaSharp encodes them.</summary>
public static class ImageGrid
{
    /// <summary>Writes images <c>[N, C, H, W]</c> with values in [-1, 1] as a grid of <paramref name="columns"/> columns.</summary>
    /// <param name="images">Images, 1 or 3 channels.</param>
    /// <param name="columns">Images per row.</param>
    /// <param name="path">PNG file, written atomically.</param>
    /// <param name="scale">Integer upscaling (nearest neighbour) for legibility.</param>
    public static void Save(Tensor images, int columns, string path, int scale = 2)
    {
        using var scope = NewDisposeScope();
        var x = ((images.detach().to_type(ScalarType.Float32).cpu().clamp(-1, 1) + 1) / 2);                 // [N, C, H, W] in [0, 1]
        var grid = torchvision.utils.make_grid(x, columns, padding: 2, pad_value: 1.0);                      // [3, H', W']
        if (scale > 1) grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2);
        var hwc = (grid * 255).round().clamp(0, 255).to_type(ScalarType.Byte).permute(1, 2, 0).contiguous(); // [H', W', 3]
        int height = (int)hwc.shape[0], width = (int)hwc.shape[1];
        var rgb = hwc.data<byte>().ToArray();
        var rgba = new byte[width * height * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgba[j] = rgb[i];
            rgba[j + 1] = rgb[i + 1];
            rgba[j + 2] = rgb[i + 2];
            rgba[j + 3] = 255;
        }
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        Storage.AtomicFile.Write(path, s => png.SaveTo(s));
    }
}
