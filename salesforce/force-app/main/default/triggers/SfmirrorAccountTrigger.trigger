// Pushes every saved Account to sfmirror. All logic lives in SfmirrorTriggerHandler.
trigger SfmirrorAccountTrigger on Account (after insert, after update, after delete, after undelete) {
    SfmirrorTriggerHandler.handle();
}
