"""Detection groundwork shared by SSD and RetinaNet: anchors, box coding and matching, losses, NMS
and the ``TFLite_Detection_PostProcess`` export tail. Boxes are xyxy pixels unless a docstring says otherwise."""
