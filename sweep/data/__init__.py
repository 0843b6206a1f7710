"""What a sweep captions: dataset sources (`sources`: COCO captions files) and video scenes (`video`)."""
