namespace HierDistill.Tests.Support;

/// <summary>Reads the scalar points of TensorBoard event files (TFRecord framing: length, CRC, an <c>Event</c> protobuf, CRC).</summary>
public static class TensorBoardEvents
{
    /// <summary>Every scalar point of every event file under <paramref name="folder"/>, as (tag, step, value).</summary>
    public static List<(string Tag, long Step, float Value)> Scalars(string folder)
    {
        var points = new List<(string, long, float)>();
        foreach (var file in Directory.GetFiles(folder, "events.out.tfevents.*", SearchOption.AllDirectories).Order())
        {
            using var reader = new BinaryReader(File.OpenRead(file));
            while (reader.BaseStream.Position < reader.BaseStream.Length)
            {
                long length = reader.ReadInt64();
                reader.ReadUInt32(); // masked CRC of the length
                var evnt = Tensorboard.Event.Parser.ParseFrom(reader.ReadBytes(checked((int)length)));
                reader.ReadUInt32(); // masked CRC of the data
                if (evnt.Summary is null) continue;
                foreach (var v in evnt.Summary.Value) points.Add((v.Tag, evnt.Step, v.SimpleValue));
            }
        }
        return points;
    }
}
