"""Stock Channels: an ``AsyncWebsocketConsumer`` that saves with the ORM and ``group_send``s.

The yardstick for bench/: no auth, no seq, no acks, no fan-out to bots; nothing more than the
Channels tutorial's chat room with one ``Message.objects.create`` per frame.
"""
