"""Dataset converters: Oxford-IIIT Pet, PASCAL VOC, COCO JSON and CSV -> sharded TFRecords.

Python API: ``create_pet_tfrecord`` (pets.py), ``create_voc_tfrecord`` (voc.py), ``create_coco_tfrecord``
(coco.py), ``create_csv_tfrecord`` (csv_table.py); each returns a ``Summary`` (common.py).
"""
